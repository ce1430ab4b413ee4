"""Delivering one outbox message: checks, claim, render, SMTP, record, copy to Sent.

Idempotent: a message id may be delivered any number of times (the broker may repeat
it); it is sent at most once. The order of the steps is what keeps the promises:

1. Nothing to do for a message that is sent, failed or cancelled.
2. A message left in `sending` by a worker that died (its lease ran out) is resent only
   after the Sent folder was searched for its Message-ID and it was not there.
3. A follow-up is cancelled if the lead has answered in the thread (a cheap IMAP search on
   the thread's Message-IDs): the reply stops the enrollment.
4. The claim (one transaction) checks the window, the mailbox's daily cap and spacing, and
   marks the message `sending` with a lease; what does not fit now gets a `not_before` and
   the relay brings it back then. Nothing is lost, nothing is sent early.
5. SMTP; then the outcome is committed at once; then the copy goes to Sent.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import random
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.db.models import Mailbox, Message, Suppression, Thread
from outreach.db.session import transaction
from outreach.errors import InputError, OutreachError
from outreach.mail.compose import Party, compose, reply_subject
from outreach.mail.templates import Rendered
from outreach.mail.transport import PermanentFailure, RecipientRefused, TemporaryFailure
from outreach.sequences import engine as eng
from outreach.service import App, record
from outreach.tracking.unsubscribe import link

log = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=10)  # longer than the actor's time limit: a live worker never loses its claim
DONE = ("sent", "failed", "cancelled")


class Outcome(enum.StrEnum):
    SENT = "sent"
    DONE = "done"  # nothing to do (already sent, failed or cancelled)
    DEFERRED = "deferred"  # not now: window, cap, spacing or lease; the relay brings it back
    CANCELLED = "cancelled"
    RETRY = "retry"  # a temporary failure; tried again after a backoff
    BOUNCED = "bounced"
    FAILED = "failed"


@dataclass(frozen=True)
class _Work:
    message_id: str
    mailbox: str
    recipient: str
    lead_email: str
    status: str
    thread_ids: tuple[str, ...]  # Message-IDs already sent in this thread, root first
    subject: str
    rendered: Rendered | None
    sender: Party
    unsubscribe: str | None = None

    @property
    def is_follow_up(self) -> bool:
        return bool(self.thread_ids)


def backoff(attempts: int, rng: random.Random) -> dt.timedelta:
    """30 s, 1 min, 2 min ... up to 1 h, with up to 20 % jitter."""
    seconds = min(30 * 2 ** max(attempts - 1, 0), 3600)
    return dt.timedelta(seconds=seconds * (1 + rng.random() * 0.2))


def deliver(app: App, message_pk: int, *, now: dt.datetime | None = None) -> Outcome:
    now = now or app.clock.now()
    work = _read(app, message_pk, now)
    if isinstance(work, Outcome):
        return work
    store = app.store(work.mailbox)
    if work.status == "sending":
        if store is None:
            return _finish(app, message_pk, now, "failed", "interrupted while sending, and the mailbox has no IMAP to check its Sent folder: check by hand before sending again", "send-failed")
        if store.sent_has(work.message_id):
            return _finish(app, message_pk, now, "sent", None, "email-sent", recovered=True)
    if work.is_follow_up and store is not None:
        found = store.replies(work.thread_ids, work.lead_email)
        if found:
            return _cancel_for_reply(app, message_pk, now, found[0])
    if work.rendered is None:
        return Outcome.FAILED
    claimed = _claim(app, message_pk, now, work)
    if claimed is not None:
        return claimed
    msg = compose(
        work.rendered,
        sender=work.sender,
        recipient=Party(work.recipient),
        message_id=work.message_id,
        date=now.astimezone(app.mailbox_zone(work.mailbox)),
        subject=work.subject,
        in_reply_to=work.thread_ids[-1] if work.thread_ids else None,
        references=work.thread_ids,
        unsubscribe_url=work.unsubscribe,
        unsubscribe_mailto=f"mailto:{work.mailbox}?subject=unsubscribe",
    )
    try:
        app.transport(work.mailbox).send(msg, work.mailbox, [work.recipient])
    except TemporaryFailure as exc:
        return _retry(app, message_pk, now, str(exc))
    except RecipientRefused as exc:
        return _bounce(app, message_pk, now, exc)
    except PermanentFailure as exc:
        return _finish(app, message_pk, now, "failed", str(exc), "send-failed")
    outcome = _finish(app, message_pk, now, "sent", None, "email-sent", subject=work.subject)
    _copy_to_sent(app, message_pk, work.mailbox, msg.as_bytes(), now)
    return outcome


def _read(app: App, pk: int, now: dt.datetime) -> _Work | Outcome:
    """Everything sending needs, read without locks: the thread so far, and the rendered email."""
    with app.sessions() as session:
        message = session.get(Message, pk)
        if message is None or message.status in DONE:
            return Outcome.DONE
        if message.status == "sending" and message.not_before and message.not_before > now:
            return Outcome.DEFERRED  # another worker holds the lease
        enrollment = message.enrollment
        thread = message.thread
        thread_ids: tuple[str, ...] = ()
        if thread is not None:
            thread_ids = tuple(
                session.scalars(
                    select(Message.message_id)
                    .where(Message.thread_id == thread.id, Message.status == "sent", Message.id != message.id)
                    .order_by(Message.sent_at, Message.id)
                )
            )
        mailbox = message.mailbox
        sender = Party(message.sender, mailbox.display_name if mailbox else "")
        lead_email = enrollment.lead.email if enrollment else message.recipient
        if enrollment is None or mailbox is None:
            return _Work(message.message_id or "", message.sender, message.recipient, lead_email, message.status, thread_ids, message.subject, None, sender)
        if thread_ids and (thread is None or not thread.subject):
            return _defer(app, pk, now + dt.timedelta(minutes=1))  # the thread's first email is not out yet
        seq = app.definition(enrollment.sequence)
        context = app.context(session, seq, enrollment.lead, mailbox, message.step_key.split("@")[0] if message.step_key else "")
        try:
            rendered = app.templates.render(message.template or "", context)
        except InputError as exc:
            return _fail_now(app, pk, now, f"rendering failed: {exc}")
        if thread_ids:
            subject = message.subject or reply_subject(thread.subject if thread else rendered.subject)
        else:
            subject = message.subject or rendered.subject
        unsubscribe = link(app.settings.workspace.public_url, app.settings.secret_key, message.recipient, enrollment.id)
        return _Work(message.message_id or "", message.sender, message.recipient, lead_email, message.status, thread_ids, subject, rendered, sender, unsubscribe)


def _defer(app: App, pk: int, until: dt.datetime) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        if message is not None and message.status == "planned":
            message.not_before = until
            message.enqueued_at = None
    return Outcome.DEFERRED


def _fail_now(app: App, pk: int, now: dt.datetime, reason: str) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        if message is not None and message.status not in DONE:
            return _set_failed(session, message, now, reason)
    return Outcome.DONE


def _claim(app: App, pk: int, now: dt.datetime, work: _Work) -> Outcome | None:
    """Check the limits and take the message (status `sending`, with a lease), in one short transaction."""
    with transaction(app.sessions) as session:
        postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
        message = session.get(Message, pk, with_for_update=postgres)
        if message is None or message.status in DONE:
            return Outcome.DONE
        if message.status == "sending" and message.not_before and message.not_before > now:
            return Outcome.DEFERRED
        enrollment = message.enrollment
        if enrollment is None or enrollment.phase == eng.Phase.STOPPED.value:
            return _set_cancelled(session, message, now, f"the enrollment is {enrollment.phase if enrollment else 'gone'}")
        if session.scalar(select(Suppression.id).where(Suppression.email == message.recipient)) is not None:
            return _set_cancelled(session, message, now, "the address is suppressed")
        cfg = app.mailbox_config(message.sender)
        query = select(Mailbox).where(Mailbox.address == message.sender)
        mailbox = session.scalar(query.with_for_update() if postgres else query)
        if mailbox is None or cfg is None:
            return _set_failed(session, message, now, f"mailbox {message.sender} is not configured in outreach.yaml")
        cal = app.calendar_for(app.definition(enrollment.sequence), enrollment.lead, mailbox)
        rng = random.Random(f"{message.message_id}:{message.attempts}")
        zone = app.mailbox_zone(mailbox.address)
        today = now.astimezone(zone).date()
        count = mailbox.day_count if mailbox.day == today else 0
        later: dt.datetime | None = None
        if not cal.is_open(now):
            later = cal.next_open(now)
        elif count >= cfg.daily_cap:
            tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
            later = cal.next_open(tomorrow.astimezone(dt.timezone.utc) + dt.timedelta(seconds=rng.uniform(0, 600)))
        elif mailbox.last_sent_at is not None and cfg.min_interval + cfg.jitter > 0:
            gap = dt.timedelta(seconds=cfg.min_interval + rng.uniform(0, cfg.jitter))
            if mailbox.last_sent_at + gap > now:
                later = mailbox.last_sent_at + gap
        if later is not None:
            message.not_before = later
            message.enqueued_at = None
            return Outcome.DEFERRED
        if not work.thread_ids and message.thread_id is not None:
            thread = session.get(Thread, message.thread_id)
            if thread is not None:
                thread.subject = work.subject
                thread.root_message_id = message.message_id
        message.status = "sending"
        message.attempts += 1
        message.not_before = now + LEASE
        mailbox.last_sent_at = now
        mailbox.day, mailbox.day_count = today, count + 1
        log.info("sending message %d (enrollment %d, step %s, attempt %d)", message.id, enrollment.id, message.step_key, message.attempts)
        return None


def _set_cancelled(session: Session, message: Message, now: dt.datetime, reason: str) -> Outcome:
    message.status = "cancelled"
    message.error = reason
    _log_event(session, message, now, "send-cancelled", reason)
    return Outcome.CANCELLED


def _set_failed(session: Session, message: Message, now: dt.datetime, reason: str) -> Outcome:
    message.status = "failed"
    message.error = reason
    _log_event(session, message, now, "send-failed", reason)
    log.warning("message %d failed: %s", message.id, reason)
    return Outcome.FAILED


def _log_event(session: Session, message: Message, now: dt.datetime, kind: str, key_points: str, **data: object) -> None:
    record(session, message.enrollment, now, kind, key_points, channel="email", lead_id=message.lead_id, message=message.id, step=message.step_key, **data)


def _finish(app: App, pk: int, now: dt.datetime, status: str, error: str | None, kind: str, *, subject: str | None = None, recovered: bool = False) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        assert message is not None
        message.status = status
        message.error = error
        if subject is not None:
            message.subject = subject
        if status == "sent":
            message.sent_at = message.sent_at or now
            message.not_before = None
            if recovered:
                message.saved_to_sent = True
            _log_event(session, message, now, kind, message.subject + (" (found in Sent after an interrupted attempt)" if recovered else ""), recovered=recovered)
            log.info("message %d sent%s", pk, " (recovered)" if recovered else "")
            return Outcome.SENT
        _log_event(session, message, now, kind, error or status)
        log.warning("message %d %s: %s", pk, status, error)
        return Outcome.FAILED if status == "failed" else Outcome.DONE


def _retry(app: App, pk: int, now: dt.datetime, error: str) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        assert message is not None
        if message.attempts >= app.settings.workspace.max_attempts:
            message.status = "failed"
            message.error = f"gave up after {message.attempts} attempts; last: {error}"
            _log_event(session, message, now, "send-failed", message.error)
            log.warning("message %d dead-lettered: %s", pk, message.error)
            return Outcome.FAILED
        message.status = "planned"
        message.sent_at = None
        message.error = error
        mailbox = message.mailbox
        if mailbox is not None and mailbox.day_count > 0:
            mailbox.day_count -= 1  # it did not go out: it does not count toward today's cap
        message.not_before = now + backoff(message.attempts, random.Random(f"{message.message_id}:{message.attempts}"))
        message.enqueued_at = None
        _log_event(session, message, now, "send-deferred", f"attempt {message.attempts}: {error}; next try {message.not_before:%H:%M:%S} UTC")
        log.info("message %d: temporary failure (%s), retry at %s", pk, error, message.not_before.isoformat())
        return Outcome.RETRY


def _bounce(app: App, pk: int, now: dt.datetime, exc: RecipientRefused) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        assert message is not None and message.enrollment is not None
        message.status = "failed"
        message.sent_at = None
        message.error = str(exc)
        enrollment = message.enrollment
        app.feed(session, enrollment, eng.Bounced(at=now, hard=True))
        seq = app.definition(enrollment.sequence)
        if seq.on_bounce == "suppress" and session.scalar(select(Suppression.id).where(Suppression.email == exc.recipient.lower())) is None:
            session.add(Suppression(email=exc.recipient.lower(), reason="bounce", source=f"{exc.code} {exc.reply}", created_at=now))
        _log_event(session, message, now, "bounce", f"hard bounce at SMTP time: {exc.code} {exc.reply}", code=exc.code)
        return Outcome.BOUNCED


def _cancel_for_reply(app: App, pk: int, now: dt.datetime, found: object) -> Outcome:
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        assert message is not None
        if message.status in DONE:
            return Outcome.DONE
        enrollment = message.enrollment
        message.status = "cancelled"
        message.error = "the lead answered in this thread before it was sent"
        if enrollment is not None:
            app.feed(session, enrollment, eng.Replied(at=now))
        _log_event(session, message, now, "reply", f"answer found in the thread before {message.step_key}: {getattr(found, 'subject', '')}", uid=getattr(found, "uid", None), reply_message_id=getattr(found, "message_id", None))
        log.info("message %d cancelled: the lead answered", pk)
        return Outcome.CANCELLED


def _copy_to_sent(app: App, pk: int, address: str, raw: bytes, now: dt.datetime) -> None:
    cfg = app.mailbox_config(address)
    store = app.store(address)
    if cfg is None or cfg.imap is None or not cfg.imap.save_sent or store is None:
        return
    try:
        store.append_sent(raw, now)
    except (TemporaryFailure, OutreachError, OSError) as exc:
        log.warning("message %d: the copy to Sent failed (%s); the message itself went out", pk, exc)
        return
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        if message is not None:
            message.saved_to_sent = True
