"""The data model. Times are stored in UTC; every dated thing lives here, never only in a broker."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from outreach.clock import ensure_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in and out, stored as UTC (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return ensure_utc(value) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dt.date: Date, dict[str, Any]: JSON}


class Mailbox(Base):
    __tablename__ = "mailbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    daily_cap: Mapped[int] = mapped_column(Integer, default=200)
    last_sent_at: Mapped[dt.datetime | None]  # for the spacing between messages
    day: Mapped[dt.date | None]  # the mailbox's local day that day_count counts
    day_count: Mapped[int] = mapped_column(Integer, default=0)  # messages claimed that day, for the cap


class Person(Base):
    """A member of the team: lead owner, manager."""

    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    signature: Mapped[str] = mapped_column(Text, default="")
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))

    mailbox: Mapped[Mailbox | None] = relationship(lazy="joined")
    manager: Mapped[Person | None] = relationship(remote_side=[id])


def email_domain(email: str) -> str:
    """The part after the last @, lower-cased; '' when there is none."""
    _, at, domain = email.rpartition("@")
    return domain.lower() if at else ""


class Lead(Base):
    __tablename__ = "lead"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised
    domain: Mapped[str] = mapped_column(String(255), default="", server_default="", index=True)  # of the email, kept with it: a colleague's answer is matched by it
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="")
    country: Mapped[str] = mapped_column(String(8), default="")
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # other CSV columns
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    status: Mapped[str] = mapped_column(String(16), default="New")  # CRM status (engine.CrmStatus); New until enrolled
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    owner: Mapped[Person | None] = relationship(lazy="joined")

    @validates("email")
    def _keep_domain(self, _key: str, email: str) -> str:
        self.domain = email_domain(email)
        return email

    @property
    def display_name(self) -> str:
        """First and last name; the address for a lead known by nothing else."""
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email


class SequenceVersion(Base):
    """A snapshot of one sequence file; a changed file makes a new version."""

    __tablename__ = "sequence"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]]
    source_path: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime]


class Enrollment(Base):
    __tablename__ = "enrollment"
    __table_args__ = (Index("ix_enrollment_due", "phase", "next_action_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"), index=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequence.id"))
    sequence_name: Mapped[str] = mapped_column(String(64), index=True)
    phase: Mapped[str] = mapped_column(String(16))
    state: Mapped[dict[str, Any]]  # the engine's State, serialised
    next_action_at: Mapped[dt.datetime | None]
    seed: Mapped[int] = mapped_column(BigInteger)
    enrolled_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]

    lead: Mapped[Lead] = relationship(lazy="joined", innerjoin=True)
    sequence: Mapped[SequenceVersion] = relationship(lazy="select")  # a few versions, each loaded once per session (their definitions are large)


class Thread(Base):
    __tablename__ = "thread"
    __table_args__ = (UniqueConstraint("enrollment_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollment.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(998), default="")
    root_message_id: Mapped[str | None] = mapped_column(String(998))


class Message(Base):
    """An email, outbound (the outbox) or inbound. One outbound row per (enrollment, step), ever."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_key"),
        Index("ix_message_status", "direction", "status"),
        Index("ix_message_outbox", "status", "not_before"),
        Index("ix_message_mailbox_sent", "mailbox_id", "sent_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))  # out | in
    kind: Mapped[str] = mapped_column(String(16), default="sequence", server_default="sequence")  # sequence | notify (to the team) | draft (left in Drafts)
    body: Mapped[str | None] = mapped_column(Text)  # the text of a notification, written when it was planned
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="SET NULL"), index=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("thread.id", ondelete="SET NULL"), index=True)  # a thread's sent messages are looked up before each send
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id"))
    step_key: Mapped[str | None] = mapped_column(String(100))
    template: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # planned | sending | sent | drafted | failed | cancelled
    subject: Mapped[str] = mapped_column(String(998), default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    recipient: Mapped[str] = mapped_column(String(320), default="")
    planned_at: Mapped[dt.datetime | None]
    not_before: Mapped[dt.datetime | None]  # the next attempt: after a deferral, a cap or a backoff
    enqueued_at: Mapped[dt.datetime | None]  # last handed to the broker
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[dt.datetime | None]
    saved_to_sent: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]

    enrollment: Mapped[Enrollment | None] = relationship(lazy="select")
    thread: Mapped[Thread | None] = relationship(lazy="select")
    mailbox: Mapped[Mailbox | None] = relationship(lazy="select")


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (UniqueConstraint("enrollment_id", "step_key"), Index("ix_task_open", "status", "due_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    step_key: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[dt.datetime]
    wait: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | skipped | closed (the lead was won or lost)
    outcome: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]


class Event(Base):
    """The activity log: the lead's CRM record."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_lead_at", "lead_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32), default="system")
    key_points: Mapped[str] = mapped_column(Text, default="")
    next_follow_up_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Suppression(Base):
    """Addresses never to be mailed again (bounced, unsubscribed, asked to stop)."""

    __tablename__ = "suppression"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]


class FolderCursor(Base):
    """How far the poller has read one IMAP folder: moved in the same transaction as what it read."""

    __tablename__ = "folder_cursor"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"))
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime]


class InboundMail(Base):
    """An email that reached one of our mailboxes and mattered: recorded once, whichever mailbox
    and folder it was seen in, by its Message-ID (or a digest of it for mail without one)."""

    __tablename__ = "inbound_mail"
    __table_args__ = (Index("ix_inbound_mail_lead", "lead_id", "received_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(998), unique=True)  # the Message-ID, or "digest:<sha256>"
    message_id: Mapped[str | None] = mapped_column(String(998))
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id"))
    folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    uid: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))  # reply | auto_reply | bounce | unsubscribe | complaint | delivery_notice | bulk | own_reply | quarantined
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="SET NULL"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment.id", ondelete="SET NULL"))
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("thread.id", ondelete="SET NULL"))
    matched_by: Mapped[str] = mapped_column(String(32), default="")  # headers | bounce-report | lead-subject | domain-subject | recipient | ""
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    received_at: Mapped[dt.datetime]
    seen_at: Mapped[dt.datetime]
    new_text: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)  # why it was quarantined
