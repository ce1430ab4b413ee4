"""The IMAP poller: every answer that reaches a mailbox is read, classified, matched and acted on, once.

Per mailbox and folder a cursor (UIDVALIDITY, last UID read) says how far it got. New mail is
read headers first; bodies are fetched only for mail that may concern us (it refers to a message
we sent, comes from a lead or a lead's company, or looks like a report or an auto-reply). Each
chunk of messages is recorded in one transaction together with the cursor's move, so a crash
re-reads the chunk and the unique key on inbound mail (its Message-ID, else a digest) records
nothing twice. A new UIDVALIDITY re-reads the folder since our first send, with the same guard.
A message that breaks the processing is quarantined (kept, with the error) and the poller goes on.

INBOX brings replies, auto-replies, bounces and opt-outs; the Sent folder brings the owner's own
answers, logged as contacts with the time the lead waited for them. Our own sequence mail in
Sent is recognised by its Message-ID and never counts.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, load_only, selectinload

from outreach import bounces, metrics
from outreach.config import MailboxConfig
from outreach.db.batch import among, assign_ids
from outreach.db.models import (
    Enrollment,
    FolderCursor,
    InboundMail,
    Lead,
    Mailbox,
    Message,
    Suppression,
    Task,
    Thread,
    email_domain,
)
from outreach.db.session import transaction
from outreach.logs import outage
from outreach.mail import bounce_reasons as reasons
from outreach.mail import inbound as inb
from outreach.mail import intake
from outreach.mail.bounce_reasons import Effect, Reason, effect_of
from outreach.mail.reader import FolderReader, FolderState
from outreach.mail.sentiment import is_negative
from outreach.mail.subjects import thread_key
from outreach.scheduler import escalate_answer
from outreach.sequences import engine as eng
from outreach.service import App, record, running_enrollments, suppress

log = logging.getLogger(__name__)

CHUNK = 2000  # messages per FETCH of headers and per transaction
BODY_LIMIT = 1024 * 1024  # bytes of a message read: every text part and report, not a large attachment
BODY_BUDGET = 32 * BODY_LIMIT  # bytes of bodies a part holds (two are held at once): a chunk with more is recorded in parts
IDLE_TURN = 5.0  # seconds per IDLE turn
IDLE_LINE = 60.0  # seconds: a pass that found nothing is told at most this often
THREAD_SPAN = dt.timedelta(days=120)  # how long after our last message a subject-only match still counts
_FREE_MAIL = frozenset({"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "aol.com", "icloud.com", "me.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com", "rediffmail.com"})


@dataclass
class PollResult:
    seen: int = 0
    recorded: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    resynced: list[str] = field(default_factory=list)

    def add(self, part: PollResult) -> None:
        self.seen += part.seen
        self.recorded.update(part.recorded)
        self.quarantined += part.quarantined


@dataclass
class _Seen:
    """What a chunk's messages already are to us, read in two queries: the messages we sent that they
    are (ours) or refer to (sent, by Message-ID), and the keys already recorded."""

    sent: dict[str, Message]
    keys: set[str]

    def ours(self, message_id: str | None) -> bool:
        return message_id is not None and message_id in self.sent


@dataclass(frozen=True)
class _Item:
    """A fetched message, parsed once; in INBOX, classified before the transaction opens."""

    fetched: intake.Headed
    read: intake.Read

    @property
    def message(self) -> inb.Inbound:
        return self.read.message

    @property
    def received(self) -> dt.datetime:  # the server's arrival time, never after the clock
        return self.read.received

    @property
    def found(self) -> inb.Classification | None:
        return self.read.found

    @property
    def refers_to(self) -> list[str]:
        """The Message-IDs it answers or reports on, threading headers first."""
        m = self.message
        ids = [*m.references, *([m.in_reply_to] if m.in_reply_to else [])]
        if self.found is not None and self.found.original_message_id:
            ids.append(self.found.original_message_id)
        return ids


@dataclass(frozen=True)
class _Chunk:
    """Messages read from the server: their UIDs, how many there were, and those worth recording."""

    uids: list[int]
    seen: int
    items: list[_Item]


class _Reading:
    """A chunk whose bodies are being parsed and classified (in a worker, for a large one)."""

    def __init__(self, fetched: list[intake.Headed], pending: intake.Pending[intake.Read], gone: Sequence[int] = ()) -> None:
        self.fetched, self.pending, self.gone = fetched, pending, list(gone)

    def chunk(self) -> _Chunk:
        by_uid = {item.uid: item for item in self.fetched}
        items = [_Item(by_uid[read.uid], read) for read in self.pending.result()]
        return _Chunk([item.uid for item in self.fetched] + self.gone, len(self.fetched), items)


@dataclass(frozen=True)
class Match:
    lead: Lead
    enrollment: Enrollment | None
    thread: Thread | None
    how: str


class MailboxPoller:
    """Reads one mailbox's INBOX and Sent folder. One connection; one thread at a time."""

    def __init__(self, app: App, config: MailboxConfig, *, reader: FolderReader | None = None, readers: intake.Readers | None = None) -> None:
        if config.imap is None:
            raise ValueError(f"mailbox {config.address} has no imap settings")
        self.app = app
        self.config = config
        self.address = config.address.lower()
        self.reader = reader or FolderReader(config.imap)
        self.readers = readers or intake.shared()

    @property
    def folders(self) -> tuple[str, str]:
        assert self.config.imap is not None
        return (self.config.imap.sent_folder, "INBOX")  # INBOX last: it stays selected for IDLE

    def poll(self) -> PollResult:
        result = PollResult()
        for folder in self.folders:
            self._poll_folder(folder, result)
        return result

    @property
    def can_idle(self) -> bool:
        return self.reader.can_idle

    def wait(self, seconds: float) -> bool:
        """IDLE on INBOX for up to `seconds`; True when new mail arrived."""
        if self.reader.folder != "INBOX":
            self.reader.open("INBOX")
        return self.reader.idle(seconds)

    def close(self) -> None:
        self.reader.close()

    def take(self, folder: str, uids: Sequence[int]) -> PollResult:
        """Read these messages now, ahead of the cursor (which passes them later and finds them recorded)."""
        self.reader.open(folder)
        with self.app.sessions() as session:
            mailbox_pk = session.scalar(select(Mailbox.id).where(Mailbox.address == self.address))
        assert mailbox_pk is not None
        result = PollResult()
        for reading in self._read(folder, uids, self._headers(folder, uids).result(), everything=True):
            result.add(self._record_chunk(mailbox_pk, folder, None, reading.chunk(), isolate=True))
        return result

    # -- reading -------------------------------------------------------------------------------

    def _poll_folder(self, folder: str, result: PollResult) -> None:
        with self.app.sessions() as session:
            mailbox = session.scalar(select(Mailbox).where(Mailbox.address == self.address))
            if mailbox is None:
                raise ValueError(f"mailbox {self.address} is not in the database; run the scheduler once (it syncs the team)")
            mailbox_pk = mailbox.id
            cursor = session.scalar(select(FolderCursor).where(FolderCursor.mailbox_id == mailbox_pk, FolderCursor.folder == folder))
            known = (cursor.uidvalidity, cursor.last_uid) if cursor else None
        if self.reader.folder == folder and known is not None and self.reader.uidvalidity == known[0]:
            # selected (as INBOX is between IDLEs): a NOOP brings the view up to date, cheaply
            self.reader.refresh()
            state = FolderState(known[0], 0, 0)
        else:
            # STATUS costs the same whatever the folder's size; SELECT does not (Dovecot re-reads a maildir)
            state = self.reader.status(folder)
            if known is not None and known[0] == state.uidvalidity and state.uidnext - 1 <= known[1]:
                return
            state = self.reader.open(folder)
        if known is not None and known[0] == state.uidvalidity:
            uids = self.reader.uids_after(known[1])
        else:
            if known is not None:
                log.warning("%s %s: UIDVALIDITY changed (%d -> %d); reading the folder again since our first message", self.address, folder, known[0], state.uidvalidity)
                result.resynced.append(folder)
            with self.app.sessions() as session:
                first_sent = session.scalar(select(func.min(Message.created_at)).where(Message.mailbox_id == mailbox_pk, Message.direction == "out", Message.status != "planned"))
            # The server dates mail by its own (wall) clock, which may be behind ours: a played-forward demo clock.
            since = min(first_sent, dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=1) if first_sent else None
            uids = self.reader.uids_since(since.date()) if since else []
            if not uids:
                self._move_cursor(mailbox_pk, folder, state.uidvalidity, state.uidnext - 1)
        chunks = [uids[start : start + CHUNK] for start in range(0, len(uids), CHUNK)]
        readings = (reading for chunk, headed in self._all_headers(folder, chunks) for reading in self._read(folder, chunk, headed))
        ahead: _Reading | None = None  # one chunk ahead: the next one is fetched (and parsed, in a worker) while this one is recorded
        try:
            for reading in readings:
                done, ahead = ahead, None
                if done is not None:
                    self._record(mailbox_pk, folder, state.uidvalidity, done.chunk(), result)
                ahead = reading
        finally:  # the last chunk; or, should the server go away while the next is fetched, the one read before it
            if ahead is not None:
                self._record(mailbox_pk, folder, state.uidvalidity, ahead.chunk(), result)

    def _headers(self, folder: str, uids: Sequence[int]) -> intake.Pending[intake.Headed]:
        """The headers of these messages, fetched now and handed to be parsed and glanced at: a FETCH
        a worker, for a large chunk, so that the workers parse it together."""
        pieces = self.readers.split(uids, intake.HEADERS_POOL_FROM)
        return intake.Pending.joined([self.readers.submit_headers(self.reader.raw_headers(piece), piece, inbox=folder == "INBOX") for piece in pieces])

    def _all_headers(self, folder: str, chunks: Iterable[Sequence[int]]) -> Iterator[tuple[Sequence[int], list[intake.Headed]]]:
        """Each chunk's headers, parsed: the next chunk's are fetched before this one's are waited for,
        so that the connection reads while a worker parses."""
        ahead: tuple[Sequence[int], intake.Pending[intake.Headed]] | None = None
        for uids in chunks:
            pending = self._headers(folder, uids)
            if ahead is not None:
                yield ahead[0], ahead[1].result()
            ahead = (uids, pending)
        if ahead is not None:
            yield ahead[0], ahead[1].result()

    def _read(self, folder: str, uids: Sequence[int], fetched: list[intake.Headed], *, everything: bool = False) -> Iterator[_Reading]:
        """Given the headers, the bodies of what may concern us (or of `everything`), handed to be
        parsed and, in INBOX, classified. In parts, each fetched when the one before it is handed on,
        so that no more than two parts' bodies (BODY_BUDGET bytes each) are held at once."""
        if everything:
            wanted = {item.uid for item in fetched}
        else:
            with self.app.sessions() as session:
                wanted = set(self._wanted(session, fetched))
        parts: list[list[intake.Headed]] = [[]]
        budget = BODY_BUDGET
        for item in fetched:
            cost = min(item.size, BODY_LIMIT) if item.uid in wanted else 0
            if parts[-1] and cost and cost > budget:
                parts.append([])
                budget = BODY_BUDGET
            parts[-1].append(item)
            budget -= cost
        gone = sorted(set(uids) - {item.uid for item in fetched})  # expunged since the SEARCH: the cursor passes them too
        for n, part in enumerate(parts):
            bodies = self.reader.bodies([item.uid for item in part if item.uid in wanted], BODY_LIMIT)
            batch = [(item.uid, bodies[item.uid], item.internal_date) for item in part if item.uid in bodies]
            pending = self.readers.submit(batch, self.app.clock.now(), classify=folder == "INBOX")
            yield _Reading(part, pending, gone if n == len(parts) - 1 else ())

    def _record(self, mailbox_pk: int, folder: str, uidvalidity: int, chunk: _Chunk, result: PollResult) -> None:
        cursor = (uidvalidity, max(chunk.uids))
        try:  # the whole chunk in one go; should one message fail, again one by one, to set it aside
            done = self._record_chunk(mailbox_pk, folder, cursor, chunk, isolate=False)
        except Exception:
            log.warning("%s %s: a message in UIDs %d-%d failed; reading them one at a time", self.address, folder, chunk.uids[0], chunk.uids[-1], exc_info=True)
            done = self._record_chunk(mailbox_pk, folder, cursor, chunk, isolate=True)
        result.add(done)

    def _record_chunk(self, mailbox_pk: int, folder: str, cursor: tuple[int, int] | None, chunk: _Chunk, *, isolate: bool) -> PollResult:
        """Record a chunk and move the cursor (uidvalidity, last UID) past it, in one transaction.

        What the chunk refers to is read in two queries; the inbound rows are written together, then
        acted on. With `isolate`, each message gets a savepoint of its own instead, and one that fails
        is quarantined."""
        result = PollResult(seen=chunk.seen)
        now = self.app.clock.now()
        items = chunk.items
        with transaction(self.app.sessions) as session:
            seen = _prefetch(session, items)
            if isolate:
                kinds = [self._process(session, mailbox_pk, folder, item, seen, now) for item in items]
            elif folder == "INBOX":
                kinds = self._record_inbox(session, mailbox_pk, items, seen, now)
            else:
                kinds = [self._examine_sent(session, mailbox_pk, folder, item, seen, now) for item in items]
            for kind in kinds:
                if kind is not None:
                    result.recorded[kind] += 1
                    result.quarantined += kind == "quarantined"
            if cursor is not None:
                self._set_cursor(session, mailbox_pk, folder, *cursor)
        return result

    def _record_inbox(self, session: Session, mailbox_pk: int, items: list[_Item], seen: _Seen, now: dt.datetime) -> list[str | None]:
        """The rows of a chunk in one INSERT, then what each one does to its lead, from what the chunk
        reads for all of them at once; what that writes goes out in one flush at the end."""
        matched = [(item, examined) for item in items if (examined := self._examine(session, mailbox_pk, "INBOX", item, seen, now)) is not None]
        assign_ids(session, (row for _, (row, _, _) in matched))
        session.flush()
        known = _known(session, [(row, match) for _, (row, match, _) in matched])
        for item, (row, match, found) in matched:
            act(self.app, session, row, found, match, item.received, known=known)
        assign_ids(session)  # the events, tasks and suppressions: one executemany each
        return [row.kind for _, (row, _, _) in matched]

    def _move_cursor(self, mailbox_pk: int, folder: str, uidvalidity: int, last_uid: int) -> None:
        with transaction(self.app.sessions) as session:
            self._set_cursor(session, mailbox_pk, folder, uidvalidity, last_uid)

    def _set_cursor(self, session: Session, mailbox_pk: int, folder: str, uidvalidity: int, last_uid: int) -> None:
        now = self.app.clock.now()
        moved = session.execute(  # the usual case, in one statement: the cursor is there, on this UIDVALIDITY
            update(FolderCursor)
            .where(FolderCursor.mailbox_id == mailbox_pk, FolderCursor.folder == folder, FolderCursor.uidvalidity == uidvalidity)
            .values(last_uid=case((FolderCursor.last_uid < last_uid, last_uid), else_=FolderCursor.last_uid), updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount:  # type: ignore[attr-defined]
            return
        cursor = session.scalar(select(FolderCursor).where(FolderCursor.mailbox_id == mailbox_pk, FolderCursor.folder == folder))
        if cursor is None:
            session.add(FolderCursor(mailbox_id=mailbox_pk, folder=folder, uidvalidity=uidvalidity, last_uid=max(last_uid, 0), updated_at=now))
        else:
            if cursor.uidvalidity != uidvalidity:
                cursor.uidvalidity, cursor.last_uid = uidvalidity, 0
            cursor.last_uid = max(cursor.last_uid, last_uid)
            cursor.updated_at = now

    def _wanted(self, session: Session, fetched: list[intake.Headed]) -> list[int]:
        """The messages worth a body: those that may concern one of our threads, leads or sends."""
        glances = [item.glance for item in fetched]
        refs = set().union(*(g.refs for g in glances))
        people = set().union(*(g.people for g in glances))
        ours = set(session.scalars(select(Message.message_id).where(among(session, Message.message_id, refs)))) if refs else set()
        leads = set(session.scalars(select(Lead.email).where(among(session, Lead.email, people)))) if people else set()
        domains = {email_domain(a) for a in people} - _FREE_MAIL
        lead_domains = set(session.scalars(select(Lead.domain).where(among(session, Lead.domain, domains)).distinct())) if domains else set()
        return [g.uid for g in glances if g.automatic or g.refs & ours or g.people & leads or (lead_domains and g.domains & lead_domains)]

    # -- one message ---------------------------------------------------------------------------

    def _process(self, session: Session, mailbox_pk: int, folder: str, item: _Item, seen: _Seen, now: dt.datetime) -> str | None:
        """Record and act on one message in a savepoint of its own: if it fails, it is quarantined."""
        try:
            with session.begin_nested():
                if folder != "INBOX":
                    return self._examine_sent(session, mailbox_pk, folder, item, seen, now)
                found = self._examine(session, mailbox_pk, folder, item, seen, now)
                if found is None:
                    return None
                row, match, classified = found
                session.flush()
                act(self.app, session, row, classified, match, item.received)
                return row.kind
        except Exception as exc:  # one bad message must not stop the poller: keep it aside, with why
            log.exception("%s %s UID %d: quarantined", self.address, folder, item.fetched.uid)
            message = item.message
            key = _key(message)
            if session.scalar(select(InboundMail.id).where(InboundMail.key == key)) is not None:
                return None
            session.add(InboundMail(key=key, message_id=message.message_id, mailbox_id=mailbox_pk, folder=folder, uid=item.fetched.uid, kind="quarantined", sender=message.from_addr[:320], subject=message.subject[:998], received_at=item.fetched.internal_date or now, seen_at=now, error=f"{type(exc).__name__}: {exc}"[:2000]))
            return "quarantined"

    def _is_new(self, item: _Item, seen: _Seen) -> bool:
        """Neither one of ours (a sequence email in Sent, or a copy that came back) nor recorded before
        (from another mailbox, or before a restart or a resync)."""
        key = _key(item.message)
        if seen.ours(item.message.message_id) or key in seen.keys:
            return False
        seen.keys.add(key)
        return True

    def _examine(self, session: Session, mailbox_pk: int, folder: str, item: _Item, seen: _Seen, now: dt.datetime) -> tuple[InboundMail, Match, inb.Classification] | None:
        """The row for a message of ours to record (added to the session), its match and its
        classification (an auto-reply's return date read now that it concerns us); None when it does not concern us."""
        if not self._is_new(item, seen):
            return None
        found, message = item.found, item.message
        assert found is not None
        match = self._match(session, item, seen)
        if match is None:
            return None  # unrelated: not logged against anyone
        found = item.read.dated()
        row = InboundMail(
            key=_key(message), message_id=message.message_id, mailbox_id=mailbox_pk, folder=folder, uid=item.fetched.uid, kind=found.kind.value,
            lead_id=match.lead.id, enrollment_id=match.enrollment.id if match.enrollment else None, thread_id=match.thread.id if match.thread else None,
            matched_by=match.how, sender=message.from_addr[:320], subject=message.subject[:998], received_at=item.received, seen_at=now,
            new_text=found.new_text, evidence=_evidence(found),
        )
        session.add(row)
        return row, match, found

    def _examine_sent(self, session: Session, mailbox_pk: int, folder: str, item: _Item, seen: _Seen, now: dt.datetime) -> str | None:
        if not self._is_new(item, seen):
            return None
        return self._own_reply(session, mailbox_pk, folder, item, seen, now)

    def _own_reply(self, session: Session, mailbox_pk: int, folder: str, item: _Item, seen: _Seen, now: dt.datetime) -> str | None:
        """Mail the owner wrote by hand in one of our threads: a contact, and the lead's wait for it."""
        message, key, sent = item.message, _key(item.message), item.received
        if message.from_addr and message.from_addr != self.address:
            return None
        match = self._match_outgoing(session, item, seen)
        if match is None:
            return None
        answered = session.scalars(
            select(InboundMail).where(InboundMail.lead_id == match.lead.id, InboundMail.kind == "reply", InboundMail.received_at <= sent).order_by(InboundMail.received_at.desc()).limit(1)
        ).first()
        waited = (sent - answered.received_at).total_seconds() if answered is not None and not answered.evidence.get("answered_at") else None
        row = InboundMail(key=key, message_id=message.message_id, mailbox_id=mailbox_pk, folder=folder, uid=item.fetched.uid, kind="own_reply", lead_id=match.lead.id, enrollment_id=match.enrollment.id if match.enrollment else None, thread_id=match.thread.id if match.thread else None, matched_by=match.how, sender=message.from_addr[:320], subject=message.subject[:998], received_at=sent, seen_at=now, evidence={"response_seconds": waited} if waited is not None else {})
        session.add(row)
        drafted = session.scalars(select(Message).where(Message.lead_id == match.lead.id, Message.kind == "draft", Message.status == "drafted").order_by(Message.id.desc()).limit(1)).first()
        if drafted is not None and (match.thread is None or drafted.thread_id == match.thread.id or message.message_id == drafted.message_id):
            drafted.status, drafted.sent_at = "sent", sent
            record(session, match.enrollment, sent, "escalation-message-sent", f"{self.address} sent the personal note: {message.subject}", channel="email", lead_id=match.lead.id, message=drafted.id)
        if answered is not None and waited is not None:
            answered.evidence = {**answered.evidence, "answered_at": sent.isoformat(), "response_seconds": waited}
            for task in session.scalars(select(Task).where(Task.lead_id == match.lead.id, Task.status == "open", Task.step_key.like("answer:%"))):
                task.status, task.done_at, task.outcome = "done", sent, "answered by email"
        note = f"answered by email: {message.subject}" + (f" (after {_duration(waited)})" if waited is not None else "")
        record(session, match.enrollment, sent, "owner-replied", note, channel="email", lead_id=match.lead.id, response_seconds=waited, message_id=message.message_id)
        return "own_reply"

    # -- matching ------------------------------------------------------------------------------

    def _match(self, session: Session, item: _Item, seen: _Seen) -> Match | None:
        message, found = item.message, item.found
        assert found is not None
        by_headers = _latest(seen, item.refers_to)
        if by_headers is not None:
            how = "headers" if by_headers.message_id in (*message.references, message.in_reply_to) else "bounce-report"
            return _match_for(session, by_headers, how)
        if found.kind in (inb.Kind.BOUNCE, inb.Kind.COMPLAINT, inb.Kind.DELIVERY_NOTICE):
            for address in found.recipients:
                sent = _last_sent_to(session, address.lower())
                if sent is not None:
                    return _match_for(session, sent, "recipient")
            return None
        by_subject = _by_sender_and_subject(session, message)
        if by_subject is None and found.kind is inb.Kind.UNSUBSCRIBE and message.from_addr:
            sent = _last_sent_to(session, message.from_addr)  # "unsubscribe" to our mailto: the sender is the lead
            return _match_for(session, sent, "sender") if sent is not None else None
        return by_subject

    def _match_outgoing(self, session: Session, item: _Item, seen: _Seen) -> Match | None:
        message, ids = item.message, item.refers_to
        sent = _latest(seen, ids)
        if sent is not None:
            return _match_for(session, sent, "headers")
        replied = session.scalars(select(InboundMail).where(InboundMail.message_id.in_(ids), InboundMail.lead_id.is_not(None)).limit(1)).first() if ids else None
        if replied is not None:
            lead = session.get(Lead, replied.lead_id)
            assert lead is not None
            return Match(lead, session.get(Enrollment, replied.enrollment_id) if replied.enrollment_id else None, session.get(Thread, replied.thread_id) if replied.thread_id else None, "headers")
        for address in message.to_addrs:
            lead = session.scalar(select(Lead).where(Lead.email == address))
            if lead is not None:
                subject = thread_key(message.subject)
                threads = _threads_of(session, lead)
                for thread, enrollment in threads:
                    if thread_key(thread.subject) == subject:
                        return Match(lead, enrollment, thread, "lead-subject")
                return Match(lead, threads[0][1] if threads else None, None, "lead")  # written to a lead by hand: a contact all the same
        return None


# -- acting ----------------------------------------------------------------------------------------


@dataclass
class Known:
    """What a chunk reads for all its messages at once, so that acting on one asks nothing more."""

    running: dict[int, list[Enrollment]]  # lead id -> its running enrollments
    bounces: dict[int, dict[int, bool]]  # lead id -> {inbound id: counts as soft} of its bounces, this chunk's too
    suppressed: set[str]  # of the leads' addresses, those never to be mailed again (grows as the chunk is acted on)
    refused: dict[int, int] = field(default_factory=dict)  # lead id -> its soft refusals at send time


def _known(session: Session, rows: list[tuple[InboundMail, Match]]) -> Known:
    """In three queries, after the chunk's rows are flushed: the leads' running enrollments, their bounces and suppressions."""
    leads = {match.lead.id: match.lead for _, match in rows}
    bouncing = {match.lead.id for row, match in rows if row.kind == "bounce"}
    reported: dict[int, dict[int, bool]] = {lead_id: {} for lead_id in bouncing}
    if bouncing:
        for key, lead_id, evidence in session.execute(select(InboundMail.id, InboundMail.lead_id, InboundMail.evidence).where(InboundMail.lead_id.in_(bouncing), InboundMail.kind == "bounce")):
            reported[lead_id][key] = bounces.counts_as_soft(evidence or {})
    emails = {lead.email for lead in leads.values()}
    suppressed = set(session.scalars(select(Suppression.email).where(among(session, Suppression.email, emails)))) if emails else set()
    return Known(running_enrollments(session, set(leads)), reported, suppressed, bounces.refused_at_send(session, bouncing))


def act(app: App, session: Session, row: InboundMail, found: inb.Classification, match: Match, received: dt.datetime, *, known: Known | None = None) -> None:
    """What a classified, matched message does to the lead's enrollments and record. `known`: what
    the message's chunk read for all its leads at once; without it, each is read here."""
    lead = match.lead
    running = known.running.get(lead.id, []) if known is not None else None
    kind = found.kind
    summary = _summary(found, row)
    data: dict[str, Any] = {"inbound": row.id, "matched_by": match.how, "message_id": row.message_id, "evidence": row.evidence}
    if kind is inb.Kind.REPLY:
        app.feed_lead(session, lead, eng.Replied(at=received), running=running)
        record(session, match.enrollment, received, "reply", summary, channel="email", lead_id=lead.id, meeting=found.meeting, **data)
        if found.meeting == "accepted":
            record(session, match.enrollment, received, "meeting", "meeting accepted (calendar reply)", channel="email", lead_id=lead.id, outcome="meeting booked", inbound=row.id)
        _ask_owner_to_answer(app, session, lead, match, row, received)
        seq = app.definition(match.enrollment) if match.enrollment is not None else None
        if seq is not None and match.enrollment is not None and seq.on_negative_reply == "escalate" and is_negative(row.new_text):
            escalate_answer(app, session, match.enrollment, row, received, why="negative feedback", within=seq.negative_within)
    elif kind is inb.Kind.AUTO_REPLY:
        until = None
        if found.until is not None and match.enrollment is not None:
            cal = app.enrollment_calendar(session, match.enrollment, app.definition(match.enrollment))
            until = cal.next_open(dt.datetime.combine(found.until, dt.time(0), tzinfo=cal.tz).astimezone(dt.timezone.utc))
        app.feed_lead(session, lead, eng.AutoReplied(at=received, until=until), active_only=True, running=running)
        record(session, match.enrollment, received, "auto-reply", summary + (f"; back {found.until:%Y-%m-%d}" if found.until else ""), channel="email", lead_id=lead.id, until=found.until.isoformat() if found.until else None, **data)
    elif kind is inb.Kind.BOUNCE:
        _bounced(app, session, row, found, match, received, data, known=known, running=running)
    elif kind in (inb.Kind.UNSUBSCRIBE, inb.Kind.COMPLAINT):
        app.feed_lead(session, lead, eng.Unsubscribed(at=received), running=running)
        _suppress(app, session, lead.email, "unsubscribe" if kind is inb.Kind.UNSUBSCRIBE else "complaint", found.reason, received, match, always=kind is inb.Kind.COMPLAINT, known=known)
        record(session, match.enrollment, received, "unsubscribe" if kind is inb.Kind.UNSUBSCRIBE else "complaint", summary, channel="email", lead_id=lead.id, **data)
    elif kind is inb.Kind.BULK:  # a newsletter or a list's mail: on the record, and the sequence goes on
        record(session, match.enrollment, received, "bulk-mail", summary, channel="email", lead_id=lead.id, **data)
    else:
        record(session, match.enrollment, received, "delivery-notice", summary, channel="email", lead_id=lead.id, **data)


def _bounced(app: App, session: Session, row: InboundMail, found: inb.Classification, match: Match, received: dt.datetime, data: dict[str, Any], *, known: Known | None, running: list[Enrollment] | None) -> None:
    """A bounce acts by its reason, as the sequence says: a dead address is suppressed; a mailbox that
    cannot take mail now counts as soft (the third suppresses); a refusal about us (our server, domain,
    or message) keeps the lead and holds its sequence on a task for the owner."""
    lead = match.lead
    reason = reasons.parse(found.cause) if found.cause else reasons.reason_of(found.status, "", found.reason)  # one read without reasons: by its status
    seq = app.definition(match.enrollment) if match.enrollment is not None else None
    permanent = bool(found.hard)
    effect = seq.bounce_effect(reason, permanent=permanent) if seq is not None else effect_of(reason, permanent=permanent)
    row.evidence = {**row.evidence, "effect": effect.value}
    if known is not None:
        known.bounces.setdefault(lead.id, {})[row.id] = effect is Effect.SOFT
    soft = _soft_bounces_before(session, lead, row, known) + 1 if effect is Effect.SOFT else 0
    suppressing = effect is Effect.SUPPRESS or soft >= bounces.LIMIT
    if suppressing:
        outcome = "the address is suppressed" if effect is Effect.SUPPRESS else f"{soft} soft bounces in a row: the address is suppressed"
    elif effect is Effect.SOFT:
        outcome = f"soft bounce {soft} of {bounces.LIMIT}"
    else:
        outcome = "not the address's fault: the lead stays; a task for the owner"
    record(session, match.enrollment, received, "bounce", f"{_summary(found, row)}; {outcome}", channel="email", lead_id=lead.id, hard=suppressing, status=found.status, cause=reason.value, effect=effect.value, **data)
    if suppressing:
        app.feed_lead(session, lead, eng.Bounced(at=received, hard=True), running=running)
        _suppress(app, session, lead.email, "bounce", f"{found.status or ''} {found.reason}".strip(), received, match, known=known)
    elif effect is Effect.TASK:
        refused(app, session, match.enrollment, lead, reason, f"{found.status or ''} {found.reason}", f"bounce:{row.id}", received, inbound=row.id)


def refused(app: App, session: Session, enrollment: Enrollment | None, lead: Lead, reason: Reason, detail: str, key: str, at: dt.datetime, **data: object) -> None:
    """A refusal about us (our server, domain or message), whether a report or the server's own
    answer at send time told of it: a task for the owner, due within the sequence's reply SLA, and
    the lead's sequence waits for it to be closed. The lead is kept."""
    due = at + dt.timedelta(days=1)
    if enrollment is not None:
        seq = app.definition(enrollment)
        due = app.enrollment_calendar(session, enrollment, seq).after(at, seq.reply_sla, random.Random(key))
    title = f"Email to {lead.display_name} refused ({reason.value}): check the sending mailbox, then reach them another way"[:300]
    session.add(Task(enrollment_id=enrollment.id if enrollment else None, lead_id=lead.id, assignee_id=lead.owner_id, step_key=key, channel="email", title=title, note=detail.strip()[:2000], due_at=due, wait=True, status="open", created_at=at))
    record(session, enrollment, at, "task-opened", title, channel="email", lead_id=lead.id, step=key, **data)
    if enrollment is not None and enrollment.phase in (eng.Phase.ACTIVE.value, eng.Phase.WAITING.value, eng.Phase.PAUSED.value):
        app.feed(session, enrollment, eng.Refused(at=at, task_key=key))


def _soft_bounces_before(session: Session, lead: Lead, row: InboundMail, known: Known | None) -> int:
    """The lead's soft bounces recorded before this one: reports read before it, and refusals at send time."""
    if known is not None:
        return sum(1 for key, soft in known.bounces.get(lead.id, {}).items() if key < row.id and soft) + known.refused.get(lead.id, 0)
    return bounces.reported(session, lead.id, before=row.id) + bounces.refused_at_send(session, (lead.id,)).get(lead.id, 0)


def _suppress(app: App, session: Session, email: str, reason: str, source: str, at: dt.datetime, match: Match, *, always: bool = False, known: Known | None = None) -> None:
    """As the sequence says (on_bounce / on_unsubscribe); a complaint always."""
    if not always and match.enrollment is not None:
        seq = app.definition(match.enrollment)
        if (seq.on_bounce if reason == "bounce" else seq.on_unsubscribe) != "suppress":
            return
    suppress(session, email, reason, source, at, known=known.suppressed if known is not None else None)


def _ask_owner_to_answer(app: App, session: Session, lead: Lead, match: Match, row: InboundMail, at: dt.datetime) -> None:
    """The owner hears of the reply as an open task to answer it, due within the sequence's reply_sla."""
    due = at + dt.timedelta(days=1)
    if match.enrollment is not None:
        seq = app.definition(match.enrollment)
        due = app.enrollment_calendar(session, match.enrollment, seq).after(at, seq.reply_sla, random.Random(row.id))
    name = lead.display_name
    first_line = next((line.strip() for line in row.new_text.splitlines() if line.strip()), "")[:200]
    session.add(Task(enrollment_id=match.enrollment.id if match.enrollment else None, lead_id=lead.id, assignee_id=lead.owner_id, step_key=f"answer:{row.id}", channel="email", title=f"Answer {name}" + (f" ({lead.company})" if lead.company else ""), note=first_line, due_at=due, wait=False, status="open", created_at=at))


# -- helpers ---------------------------------------------------------------------------------------


def _key(message: inb.Inbound) -> str:
    return message.message_id or f"digest:{message.fallback_key}"


def _prefetch(session: Session, items: list[_Item]) -> _Seen:
    """In two queries: the messages we sent that the chunk's messages are or refer to, and which of them were recorded before."""
    ids = {i for item in items for i in (item.message.message_id, *item.refers_to) if i}
    sent: dict[str, Message] = {}
    if ids:
        # by key, not joined: each table is read through its index (a join of them all reads them whole)
        query = select(Message).where(among(session, Message.message_id, ids), Message.direction == "out").options(
            load_only(Message.id, Message.direction, Message.message_id, Message.lead_id, Message.enrollment_id, Message.thread_id, Message.status, Message.sent_at),  # what matching reads
            selectinload(Message.enrollment),
            selectinload(Message.thread),
        )
        for message in session.scalars(query):
            assert message.message_id is not None
            if message.message_id not in sent or _recency(message) > _recency(sent[message.message_id]):
                sent[message.message_id] = message
    keys = {_key(item.message) for item in items}
    recorded = set(session.scalars(select(InboundMail.key).where(among(session, InboundMail.key, keys)))) if keys else set()
    return _Seen(sent, recorded)


def _recency(message: Message) -> tuple[bool, dt.datetime, int]:
    return (message.sent_at is not None, message.sent_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc), message.id)


def _latest(seen: _Seen, ids: Iterable[str]) -> Message | None:
    """Of the messages we sent with these Message-IDs, the last one sent."""
    found = [seen.sent[i] for i in ids if i in seen.sent]
    return max(found, key=_recency) if found else None


def _last_sent_to(session: Session, address: str) -> Message | None:
    return session.scalars(select(Message).where(Message.recipient == address, Message.direction == "out", Message.status.in_(("sent", "sending"))).order_by(Message.id.desc()).limit(1)).first()


def _match_for(session: Session, message: Message, how: str) -> Match | None:
    lead = message.enrollment.lead if message.enrollment is not None else session.get(Lead, message.lead_id) if message.lead_id else None
    if lead is None:
        return None
    return Match(lead, message.enrollment, message.thread, how)


def _threads_of(session: Session, lead: Lead) -> list[tuple[Thread, Enrollment]]:
    rows = session.execute(select(Thread, Enrollment).join(Enrollment, Thread.enrollment_id == Enrollment.id).where(Enrollment.lead_id == lead.id, Thread.subject != "").order_by(Thread.id.desc()))
    return [(thread, enrollment) for thread, enrollment in rows]


def _by_sender_and_subject(session: Session, message: inb.Inbound) -> Match | None:
    """For clients that drop the threading headers: the lead (or a colleague at the lead's company)
    writing with our thread's subject, while the thread is recent."""
    sender = message.from_addr
    if not sender:
        return None
    subject = thread_key(message.subject)
    when = message.date
    lead = session.scalar(select(Lead).where(Lead.email == sender))
    candidates: list[tuple[Lead, str]] = []
    if lead is not None:
        candidates.append((lead, "lead-subject"))
    domain = email_domain(sender)
    if domain and domain not in _FREE_MAIL:
        candidates.extend((other, "domain-subject") for other in session.scalars(select(Lead).where(Lead.domain == domain, Lead.email != sender).order_by(Lead.id)))
    for candidate, how in candidates:
        for thread, enrollment in _threads_of(session, candidate):
            if thread_key(thread.subject) != subject:
                continue
            span = session.execute(select(func.min(Message.sent_at), func.max(Message.sent_at)).where(Message.thread_id == thread.id, Message.status == "sent")).one()
            if span[0] is None:
                continue
            if when is None or span[0] - dt.timedelta(hours=1) <= when <= span[1] + THREAD_SPAN:
                return Match(candidate, enrollment, thread, how)
    return None


def _evidence(found: inb.Classification) -> dict[str, Any]:
    data: dict[str, Any] = {"reason": found.reason, **found.evidence}
    if found.kind is inb.Kind.BOUNCE:
        data.update(hard=bool(found.hard), status=found.status, cause=found.cause, recipients=list(found.recipients))
    if found.until is not None:
        data["until"] = found.until.isoformat()
    if found.meeting:
        data["meeting"] = found.meeting
    return data


def _summary(found: inb.Classification, row: InboundMail) -> str:
    if found.kind is inb.Kind.REPLY:
        text = " ".join(row.new_text.split())
        return (text[:300] + ("…" if len(text) > 300 else "")) or f"(no new text) {row.subject}"
    if found.kind is inb.Kind.BOUNCE:
        return f"bounce ({found.cause or Reason.UNDEFINED.value}) {found.status or ''}: {found.reason}".replace("  ", " ")
    return f"{found.reason}: {row.subject}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


# -- running ---------------------------------------------------------------------------------------


def read_now(app: App, address: str, uids: Sequence[int]) -> PollResult:
    """The inbound path for messages found outside the poller (the check before a follow-up)."""
    cfg = app.mailbox_config(address)
    assert cfg is not None
    poller = MailboxPoller(app, cfg)
    try:
        return poller.take("INBOX", uids)
    finally:
        poller.close()


def poll_all(app: App) -> dict[str, PollResult]:
    """One pass over every mailbox with IMAP settings (`outreach poll --once`)."""
    results = {}
    intake.shared().start()  # the workers import the classifier while the first headers are fetched
    for cfg in app.settings.workspace.mailboxes:
        if cfg.imap is None:
            continue
        poller = MailboxPoller(app, cfg)
        try:
            results[cfg.address] = poller.poll()
        finally:
            poller.close()
    return results


def watch(app: App, cfg: MailboxConfig, stop: threading.Event, *, interval: float = 30.0, on_result: Callable[[str, PollResult], None] | None = None) -> None:
    """Poll one mailbox until `stop`: IDLE between passes where offered, else every `interval`
    seconds; after a failure, reconnect with a backoff of 1 s doubling to 5 min."""
    intake.shared().start()
    poller = MailboxPoller(app, cfg)
    failures = 0
    last_line = 0.0
    try:
        while not stop.is_set():
            try:
                started = time.monotonic()
                result = poller.poll()
                took = time.monotonic() - started
                failures = 0
                metrics.passed(cfg.address, result.recorded)
                if result.seen or started - last_line >= IDLE_LINE:
                    last_line = started
                    found = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in sorted(result.recorded.items())) or "nothing about our leads"
                    log.info(
                        "%s: pass: %d new message(s), %s in %.0f ms", cfg.address, result.seen, found, took * 1000,
                        extra={"event": "poll-pass", "mailbox": cfg.address, "seen": result.seen, "recorded": dict(result.recorded), "ms": round(took * 1000, 1)},
                    )
                if on_result is not None:
                    on_result(cfg.address, result)
                _between_passes(poller, stop, interval)
            except Exception as exc:  # keep watching: the next pass reads from the cursor again
                failures += 1
                delay = min(2 ** (failures - 1), 300)
                reason = outage(exc)
                if reason is None:
                    log.exception("%s: poll failed; again in %d s", cfg.address, delay)
                else:
                    log.warning("%s: %s; reconnecting in %d s", cfg.address, reason, delay, extra={"event": "poll-failed", "mailbox": cfg.address, "reason": reason})
                poller.close()
                stop.wait(delay)
    finally:
        poller.close()


def _between_passes(poller: MailboxPoller, stop: threading.Event, interval: float) -> None:
    """IDLE in short turns (so a stop is heard within seconds) until new mail or `interval`; else sleep."""
    if not poller.can_idle:
        stop.wait(interval)
        return
    deadline = time.monotonic() + interval
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if poller.wait(min(IDLE_TURN, left)):
            return


def start_watchers(app: App, stop: threading.Event, *, interval: float = 30.0, on_result: Callable[[str, PollResult], None] | None = None) -> list[threading.Thread]:
    """A thread per mailbox with IMAP settings: many mailboxes in one process."""
    threads = []
    for cfg in app.settings.workspace.mailboxes:
        if cfg.imap is None:
            continue
        thread = threading.Thread(target=watch, args=(app, cfg, stop), kwargs={"interval": interval, "on_result": on_result}, name=f"poll {cfg.address}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads

