"""Delivering outbox messages: checks, claim, render, SMTP, record, copy to Sent.

Idempotent: a message id may be delivered any number of times (the broker may repeat it); it
is sent at most once. The order of the steps is what keeps the promises:

1. Nothing to do for a message that is sent, failed or cancelled.
2. A message left in `sending` by a worker that died (its lease ran out) is resent only
   after the Sent folder was searched for its Message-ID and it was not there.
3. A follow-up is cancelled if the lead has answered in the thread (a cheap IMAP search on
   the thread's Message-IDs): the reply stops the enrollment.
4. The claim (one transaction, on the locked rows) cancels a message whose lead answered
   since the enrollment began (a reply, an opt-out), whatever the enrollment's phase, and holds
   one whose enrollment is paused (an out-of-office); checks the window, the mailbox's daily cap
   and spacing; and marks the message `sending` with a lease. What does not fit now gets a
   `not_before` and the relay brings it back then. Nothing is lost, nothing is sent early.
5. SMTP; the message's outcome is committed right after its server's answer, before the next
   message of the batch goes (the window in which a worker's death leaves an accepted message
   unrecorded is that one commit's); the enrollment waiting for it is woken; then the copy
   goes to Sent.

Messages come in small batches from one mailbox (`deliver_many`): reading and claiming are
done once per batch, the SMTP connection carries the whole batch, and each message keeps its
own outcome, recorded as it happens. A worker that dies mid-batch leaves the messages it had
claimed and not sent in `sending`, which step 2 resolves once their lease runs out.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import Message as Email

from sqlalchemy import (
    Connection,
    Update,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, joinedload

from outreach import bounces, metrics
from outreach.clock import ensure_utc
from outreach.context import person_context
from outreach.db.batch import assign_ids, is_postgres
from outreach.db.models import (
    Enrollment,
    Event,
    InboundMail,
    Lead,
    Mailbox,
    Message,
    Person,
    Suppression,
)
from outreach.db.session import transaction
from outreach.errors import InputError, OutreachError
from outreach.logs import outage
from outreach.mail.compose import Party, compose
from outreach.mail.subjects import reply_subject
from outreach.mail.templates import Rendered
from outreach.mail.bounce_reasons import Effect, refusal_reason
from outreach.mail.transport import PermanentFailure, RecipientRefused, TemporaryFailure
from outreach.sequences import engine as eng
from outreach.service import App, event_values, record, suppress
from outreach.tracking.unsubscribe import link

log = logging.getLogger(__name__)

DONE = ("sent", "drafted", "failed", "cancelled")
_ENROLLMENT = Enrollment.__table__
ANSWERS = ("reply", "unsubscribe", "complaint")  # a person said something: nothing more goes to them unasked
RECORD_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between tries to record an outcome: a database restart is over by then
MAILBOX_RETRY = dt.timedelta(minutes=1)  # a check over IMAP that failed is tried again after this
HOLD = dt.timedelta(hours=1)  # a message of an enrollment paused without an end looks again this often


class Outcome(enum.StrEnum):
    SENT = "sent"
    DRAFTED = "drafted"  # left in the sender's Drafts folder for a person to finish and send
    DONE = "done"  # nothing to do (already sent, failed or cancelled)
    DEFERRED = "deferred"  # not now: window, cap, spacing or lease; the relay brings it back
    CANCELLED = "cancelled"
    RETRY = "retry"  # a temporary failure; tried again after a backoff
    BOUNCED = "bounced"
    FAILED = "failed"


@dataclass(frozen=True)
class _Work:
    pk: int
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
    kind: str = "sequence"

    @property
    def is_follow_up(self) -> bool:
        return bool(self.thread_ids)


@dataclass(frozen=True)
class _Result:
    """What SMTP said about one claimed message, to be recorded with the rest of the batch."""

    work: _Work
    email: Email | None  # None: it could not be written, and `failure` says why
    failure: Exception | None = None


def backoff(attempts: int, rng: random.Random, first: float = 30.0) -> dt.timedelta:
    """`first` seconds (30 s, the workspace's retry_after), doubling after each attempt up to 1 h, with up to 20 % jitter."""
    seconds = min(first * 2 ** max(attempts - 1, 0), 3600)
    return dt.timedelta(seconds=seconds * (1 + rng.random() * 0.2))


def deliver(app: App, message_pk: int, *, now: dt.datetime | None = None) -> Outcome:
    return deliver_many(app, [message_pk], now=now)[message_pk]


def deliver_many(app: App, message_pks: Sequence[int], *, now: dt.datetime | None = None) -> dict[int, Outcome]:
    """Deliver a batch of outbox messages; the outcome of each."""
    now = now or app.clock.now()
    outcomes: dict[int, Outcome] = {}
    ready: list[_Work] = []
    with transaction(app.sessions) as session:
        messages, works = _read(app, session, message_pks, now, outcomes)
        # what needs no look into the mailbox is claimed at once, on the rows just read and locked
        claimed = _claim_locked(app, session, [w for w in works if not _needs_mailbox(app, w)], messages, now, outcomes)
    for work in works:
        if _needs_mailbox(app, work):
            try:
                checked = _check_mailbox(app, work, now)
            except TemporaryFailure as exc:  # the mail server is away: the check, and so the message, waits
                log.warning("message %d waits a minute: the look into %s failed (%s)", work.pk, work.mailbox, exc)
                outcomes[work.pk] = _one(app, work.pk, lambda s, m: _wait(m, now + MAILBOX_RETRY)) or Outcome.DEFERRED
                continue
            if checked is None:
                ready.append(work)
            else:
                outcomes[work.pk] = checked
    claimed += _claim(app, ready, now, outcomes)
    claimed.sort(key=lambda w: w.pk)
    lease = _lease(app)
    held_until = now + lease
    with _Records(app) as records:
        for index, work in enumerate(claimed):
            at = max(now, app.clock.now())
            result = _send(app, work, at)
            later = [w.pk for w in claimed[index + 1 :]]
            # the claim on the rest of the batch is renewed once half of it is gone
            renew = later if held_until - max(now, app.clock.now()) < lease / 2 else []
            outcomes[work.pk] = records.record(result, at, renew, lease)
            if renew:
                held_until = max(now, app.clock.now()) + lease
            if outcomes[work.pk] is Outcome.SENT:
                _copy_to_sent(app, result, at)
    return outcomes


def _lease(app: App) -> dt.timedelta:
    return dt.timedelta(seconds=app.settings.workspace.send_lease)


def _needs_mailbox(app: App, work: _Work) -> bool:
    """Whether steps 2 and 3 have something to ask the mailbox (or nothing can be sent), before the claim."""
    return work.status == "sending" or work.rendered is None or (work.is_follow_up and app.store(work.mailbox) is not None)


def _check_mailbox(app: App, work: _Work, now: dt.datetime) -> Outcome | None:
    """Steps 2 and 3, over IMAP: was an interrupted message sent after all; has the lead answered."""
    store = app.store(work.mailbox)
    if work.status == "sending":
        if store is None:
            return _one(app, work.pk, lambda s, m: _set_failed(s, m, now, "interrupted while sending, and the mailbox has no IMAP to check its Sent folder: check by hand before sending again"))
        if store.sent_has(work.message_id):
            return _one(app, work.pk, lambda s, m: _set_sent(s, m, now, recovered=True))
    if work.is_follow_up and store is not None:
        found = store.replies(work.thread_ids, work.lead_email)
        if found:
            from outreach.poller import (
                read_now,  # the inbound path: it classifies, records and acts
            )

            read_now(app, work.mailbox, [f.uid for f in found])
            return _one(app, work.pk, lambda s, m: _after_answer(s, m, now))
    if work.rendered is None:
        return Outcome.FAILED
    return None


def _send(app: App, work: _Work, now: dt.datetime) -> _Result:
    assert work.rendered is not None
    try:
        email = compose(
            work.rendered,
            sender=work.sender,
            recipient=Party(work.recipient),
            message_id=work.message_id,
            date=now.astimezone(app.mailbox_zone(work.mailbox)),
            subject=work.subject,
            in_reply_to=work.thread_ids[-1] if work.thread_ids else None,
            references=work.thread_ids,
            unsubscribe_url=work.unsubscribe,
            unsubscribe_mailto=f"mailto:{work.mailbox}?subject=unsubscribe" if work.kind != "notify" else None,
        )
    except InputError as exc:  # a header no server would take either (a name with control characters, a link too long to fold)
        return _Result(work, None, PermanentFailure(f"the email cannot be written: {exc}"))
    try:
        if work.kind == "draft":
            store = app.store(work.mailbox)
            if store is None:
                raise PermanentFailure(f"{work.mailbox} has no imap settings, so the draft cannot be left in its Drafts folder; add imap, or use mode: send")
            store.append_draft(email.as_bytes(), now)
        else:
            app.transport(work.mailbox).send(email, work.mailbox, [work.recipient])
    except (TemporaryFailure, RecipientRefused, PermanentFailure) as exc:
        return _Result(work, email, exc)
    return _Result(work, email)


def _one(app: App, pk: int, change: Callable[[Session, Message], Outcome | None]) -> Outcome | None:
    """Apply one change to one message that is not finished yet, in its own transaction."""
    with transaction(app.sessions) as session:
        message = session.get(Message, pk)
        if message is None or message.status in DONE:
            return Outcome.DONE
        return change(session, message)


def _read(app: App, session: Session, pks: Sequence[int], now: dt.datetime, outcomes: dict[int, Outcome]) -> tuple[dict[int, Message], list[_Work]]:
    """Everything sending needs, read with the rows locked (PostgreSQL): the threads so far, and the
    rendered emails. A message that cannot be rendered fails, one whose thread is not started yet
    waits, in this transaction."""
    works: list[_Work] = []
    query = select(Message).where(Message.id.in_(pks)).order_by(Message.id).options(joinedload(Message.enrollment), joinedload(Message.thread), joinedload(Message.mailbox))
    if is_postgres(session):
        query = query.with_for_update(of=Message)  # in id order, so two workers never deadlock
    found = {m.id: m for m in session.scalars(query).unique()}
    for pk in pks:
        if pk not in found or found[pk].status in DONE:
            outcomes[pk] = Outcome.DONE
    live = [m for m in found.values() if m.status not in DONE]
    sent_in_thread: dict[int, list[tuple[int, str]]] = {}
    thread_pks = {m.thread_id for m in live if m.thread_id is not None}
    if thread_pks:
        rows = session.execute(
            select(Message.thread_id, Message.id, Message.message_id)
            .where(Message.thread_id.in_(thread_pks), Message.status == "sent")
            .order_by(Message.sent_at, Message.id)
        )
        for thread_pk, pk, message_id in rows:
            sent_in_thread.setdefault(thread_pk, []).append((pk, message_id))
    with session.no_autoflush:
        for message in live:
            if message.status == "sending" and message.not_before and message.not_before > now:
                outcomes[message.id] = Outcome.DEFERRED  # another worker holds the lease
                continue
            earlier = tuple(mid for pk, mid in sent_in_thread.get(message.thread_id or -1, ()) if pk != message.id)
            work = _work(app, session, message, earlier, now)
            if isinstance(work, Outcome):
                outcomes[message.id] = work
            else:
                works.append(work)
    return found, works


def _work(app: App, session: Session, message: Message, thread_ids: tuple[str, ...], now: dt.datetime) -> _Work | Outcome:
    enrollment, thread, mailbox = message.enrollment, message.thread, message.mailbox
    sender = Party(message.sender, mailbox.display_name if mailbox else "")
    lead_email = enrollment.lead.email if enrollment else message.recipient
    if enrollment is None or mailbox is None:
        return _Work(message.id, message.message_id or "", message.sender, message.recipient, lead_email, message.status, thread_ids, message.subject, None, sender)
    if thread_ids and (thread is None or not thread.subject):
        return _defer(message, now + dt.timedelta(minutes=1))  # the thread's first email is not out yet
    if message.kind == "notify":  # to the team, written when it was planned: no template, no unsubscribe link
        return _Work(message.id, message.message_id or "", message.sender, message.recipient, lead_email, message.status, (), message.subject, Rendered(message.subject, message.body or "", None), sender, None, "notify")
    seq = app.definition(enrollment)
    context = app.context(session, seq, enrollment.lead, mailbox, message.step_key.split("@")[0] if message.step_key else "")
    if message.step_key == "escalate-message":  # the manager writes: their name and signature
        writer = session.scalars(select(Person).where(Person.mailbox_id == mailbox.id).order_by(Person.email != message.sender, Person.id)).first()
        context["owner"] = person_context(writer)
    try:
        rendered = app.templates.render(message.template or "", context)
    except InputError as exc:
        return _set_failed(session, message, now, f"rendering failed: {exc}")
    if thread_ids:
        subject = message.subject or reply_subject(thread.subject if thread else rendered.subject)
    else:
        subject = message.subject or rendered.subject
    unsubscribe = link(app.settings.workspace.public_url, app.settings.secret_key, enrollment.id, now)
    return _Work(message.id, message.message_id or "", message.sender, message.recipient, lead_email, message.status, thread_ids, subject, rendered, sender, unsubscribe, message.kind)


def _wait(message: Message, until: dt.datetime) -> Outcome:
    """Try again at `until`, whether the message is planned or was left in `sending`."""
    message.not_before = until
    message.enqueued_at = None
    return Outcome.DEFERRED


def _defer(message: Message, until: dt.datetime) -> Outcome:
    return _wait(message, until) if message.status == "planned" else Outcome.DEFERRED


def _locked(session: Session, pks: Iterable[int]) -> dict[int, Message]:
    """The batch's rows, locked on PostgreSQL (in id order, so two workers never deadlock), with their
    enrollment, lead and thread; not the lead's owner, which claiming and recording never need."""
    query = (
        select(Message).where(Message.id.in_(list(pks))).order_by(Message.id)
        .options(joinedload(Message.enrollment).joinedload(Enrollment.lead).lazyload(Lead.owner), joinedload(Message.thread))
    )
    if is_postgres(session):
        query = query.with_for_update(of=Message)
    return {m.id: m for m in session.scalars(query).unique()}


def _claim(app: App, works: list[_Work], now: dt.datetime, outcomes: dict[int, Outcome]) -> list[_Work]:
    """Check the limits and take the messages that fit (status `sending`, with a lease), in one short transaction."""
    if not works:
        return []
    with transaction(app.sessions) as session:
        return _claim_locked(app, session, works, _locked(session, (w.pk for w in works)), now, outcomes)


def _claim_locked(app: App, session: Session, works: list[_Work], messages: dict[int, Message], now: dt.datetime, outcomes: dict[int, Outcome]) -> list[_Work]:
    """The claim, on message rows this transaction has locked: the mailboxes are locked last, so
    their rows (which every worker sending from them needs) are held only until the commit."""
    if not works:
        return []
    claimed: list[_Work] = []
    suppressed = set(session.scalars(select(Suppression.email).where(Suppression.email.in_({w.recipient for w in works}))))
    leads = {m.lead_id for m in messages.values() if m.lead_id is not None}
    answered: dict[int, dt.datetime] = {}
    if leads:
        latest = select(InboundMail.lead_id, func.max(InboundMail.received_at)).where(InboundMail.lead_id.in_(leads), InboundMail.kind.in_(ANSWERS)).group_by(InboundMail.lead_id)
        answered = {lead_id: ensure_utc(at) for lead_id, at in session.execute(latest) if lead_id is not None}
    query = select(Mailbox).where(Mailbox.address.in_({w.mailbox for w in works})).order_by(Mailbox.id)
    if is_postgres(session):  # read again under the lock: the rows read with the messages may be stale by now
        query = query.with_for_update().execution_options(populate_existing=True)
    mailboxes = {m.address: m for m in session.scalars(query)}
    for work in works:
        message = messages.get(work.pk)
        if message is None or message.status in DONE:
            outcomes[work.pk] = Outcome.DONE
            continue
        answer = answered.get(message.lead_id) if message.lead_id is not None else None
        outcome = _claim_one(app, session, message, mailboxes.get(message.sender), message.recipient in suppressed, answer, work, now)
        if outcome is None:
            claimed.append(work)
        else:
            outcomes[work.pk] = outcome
    return claimed


def _claim_one(app: App, session: Session, message: Message, mailbox: Mailbox | None, suppressed: bool, answered: dt.datetime | None, work: _Work, now: dt.datetime) -> Outcome | None:
    if message.status == "sending" and message.not_before and message.not_before > now:
        return Outcome.DEFERRED
    enrollment = message.enrollment
    to_lead = message.kind != "notify"  # the team still hears of a reply
    if enrollment is None or (enrollment.phase == eng.Phase.STOPPED.value and to_lead):
        return _set_cancelled(session, message, now, f"the enrollment is {enrollment.phase if enrollment else 'gone'}")
    if suppressed:
        return _set_cancelled(session, message, now, "the address is suppressed")
    if to_lead and answered is not None and answered >= _answers_count_from(app, enrollment, message):
        return _set_cancelled(session, message, now, f"the lead answered ({answered:%Y-%m-%d %H:%M} UTC) before it was sent")
    if to_lead and enrollment.phase == eng.Phase.PAUSED.value:
        return _wait(message, enrollment.next_action_at if enrollment.next_action_at is not None and enrollment.next_action_at > now else now + HOLD)
    cfg = app.mailbox_config(message.sender)
    if mailbox is None or cfg is None:
        return _set_failed(session, message, now, f"mailbox {message.sender} is not configured in outreach.yaml")
    cal = app.calendar_for(app.definition(enrollment), enrollment.lead, mailbox)
    rng = random.Random(f"{message.message_id}:{message.attempts}")
    zone = app.mailbox_zone(mailbox.address)
    today = now.astimezone(zone).date()
    count = mailbox.day_count if mailbox.day == today else 0
    later: dt.datetime | None = None
    if not cal.is_open(now):
        later = cal.next_open(now)
    elif _capped(message) and count >= cfg.daily_cap:
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
        later = cal.next_open(tomorrow.astimezone(dt.timezone.utc) + dt.timedelta(seconds=rng.uniform(0, 600)))
    elif mailbox.last_sent_at is not None and cfg.min_interval + cfg.jitter > 0:
        gap = dt.timedelta(seconds=cfg.min_interval + rng.uniform(0, cfg.jitter))
        if mailbox.last_sent_at + gap > now:
            later = mailbox.last_sent_at + gap
    if later is not None:
        return _wait(message, later)
    if not work.thread_ids and message.thread is not None:
        message.thread.subject = work.subject
        message.thread.root_message_id = message.message_id
    message.status = "sending"
    message.attempts += 1
    message.not_before = now + _lease(app)
    message.enqueued_at = None  # with this worker now, not the broker: due again the moment the lease runs out
    mailbox.last_sent_at = now
    mailbox.day, mailbox.day_count = today, count + (1 if _capped(message) else 0)
    log.debug("sending message %d (enrollment %d, step %s, attempt %d)", message.id, enrollment.id, message.step_key, message.attempts)
    return None


def _capped(message: Message) -> bool:
    """Does the message count toward its mailbox's daily cap? The cap is for mail to leads: a notice
    to a colleague or a draft left in the Drafts folder takes no lead's slot."""
    return message.kind == "sequence"


def _answers_count_from(app: App, enrollment: Enrollment, message: Message) -> dt.datetime:
    """An answer since the enrollment began holds back every message of it; where the sequence
    goes on after a reply (`on_reply: continue`), only the messages planned before it."""
    if app.definition(enrollment).on_reply == "continue" and message.planned_at is not None:
        return ensure_utc(message.planned_at)
    return ensure_utc(enrollment.enrolled_at)


class _Records:
    """Where a batch's outcomes are committed, one by one as they come. On PostgreSQL a message sent
    is one statement on a connection held for the batch (autocommit); the rest, and SQLite, a short
    transaction each."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._held: Connection | None = None

    def __enter__(self) -> _Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()

    def _connection(self) -> Connection:
        if self._held is None:
            self._held = self.app.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._held

    def _drop(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                held.close()
            except Exception:  # noqa: BLE001 - a connection that broke is gone either way
                log.debug("closing a broken connection failed", exc_info=True)

    def record(self, result: _Result, at: dt.datetime, renew: list[int], lease: dt.timedelta) -> Outcome:
        """One message's outcome, committed at once, with the claim on the rest of the batch renewed
        and the enrollment waiting for the message woken. A database that is away is waited for a
        while (a restart takes seconds); one that stays away leaves the message in `sending`, its
        copy in the Sent folder where it went out, so that recovery does not send it again."""
        app = self.app
        for wait in (*RECORD_RETRIES, None):
            try:
                if result.failure is None and result.work.kind != "draft" and app.engine.dialect.name == "postgresql":
                    return _record_sent_at_once(self._connection(), result, at, renew, lease)
                return _record_once(app, result, at, renew, lease)
            except Exception as exc:
                self._drop()
                reason = outage(exc)
                if wait is None or reason is None:
                    if result.failure is None and result.work.kind != "draft":
                        _copy_to_sent(app, result, at, mark=False)
                    raise
                log.warning("message %d: its outcome could not be recorded (%s); again in %.1f s", result.work.pk, reason, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")


def _wake_statement(postgres: bool) -> Update:
    due = select(_ENROLLMENT.c.id).where(
        _ENROLLMENT.c.id == bindparam("eid"),
        _ENROLLMENT.c.phase == eng.Phase.ACTIVE.value,
        or_(_ENROLLMENT.c.next_action_at.is_(None), _ENROLLMENT.c.next_action_at > bindparam("at")),
    )
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return update(_ENROLLMENT).where(_ENROLLMENT.c.id.in_(due.scalar_subquery())).values(next_action_at=bindparam("at"))


_WAKE = {False: _wake_statement(False), True: _wake_statement(True)}


def wake(session: Session, enrollment_id: int | None, at: dt.datetime) -> None:
    """The enrollment, if it is waiting for its email to go out, is due now. On PostgreSQL a row a
    scheduler holds is skipped rather than waited for: that scheduler reads the message as it
    finishes, and looks again soon if it read it still unsent."""
    if enrollment_id is not None:
        session.connection().execute(_WAKE[is_postgres(session)], {"eid": enrollment_id, "at": at})


def _record_once(app: App, result: _Result, at: dt.datetime, renew: list[int], lease: dt.timedelta) -> Outcome:
    with transaction(app.sessions) as session:
        outcome = _record_outcome(app, session, result, at)
        if renew:
            session.connection().execute(_RENEW, {"pks": renew, "until": at + lease})
    return outcome


def _record_outcome(app: App, session: Session, result: _Result, now: dt.datetime) -> Outcome:
    """What SMTP said about one message, in the caller's transaction. A message no longer in
    `sending` was recorded already (a commit whose answer was lost, tried again): DONE."""
    if result.failure is None and result.work.kind != "draft":
        return _record_sent(session, result, now)  # the first statement marks it sent: what matters most goes first
    message = _locked(session, [result.work.pk]).get(result.work.pk)
    if message is None or message.status != "sending":
        return Outcome.DONE
    failure = result.failure
    if failure is None:
        message.subject = result.work.subject
        outcome = _set_drafted(session, message, now)
    elif isinstance(failure, TemporaryFailure):
        outcome = _retry(app, session, message, now, str(failure))
    elif isinstance(failure, RecipientRefused):
        outcome = _bounce(app, session, message, now, failure)
    else:
        outcome = _set_failed(session, message, now, str(failure))
    assign_ids(session)
    return outcome


_MESSAGE, _EVENT = Message.__table__, Event.__table__
_SENT = (  # what the record's line of a message sent says, beside the message
    select(_MESSAGE.c.kind, _MESSAGE.c.lead_id, _MESSAGE.c.enrollment_id, _MESSAGE.c.step_key, _MESSAGE.c.recipient, _ENROLLMENT.c.lead_id, _ENROLLMENT.c.next_action_at, Lead.__table__.c.status)
    .select_from(_MESSAGE.outerjoin(_ENROLLMENT, _MESSAGE.c.enrollment_id == _ENROLLMENT.c.id).outerjoin(Lead.__table__, _ENROLLMENT.c.lead_id == Lead.__table__.c.id))
    .where(_MESSAGE.c.id == bindparam("pk"))
)
_MARK_SENT = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("pk"), _MESSAGE.c.status == "sending")
    .values(status="sent", error=None, sent_at=bindparam("sent"), not_before=None, subject=bindparam("subj"))
)
_RENEW = update(_MESSAGE).where(_MESSAGE.c.id.in_(bindparam("pks", expanding=True)), _MESSAGE.c.status == "sending").values(not_before=bindparam("until"))


# What _record_sent does, as one statement: a message sent costs the batch one round trip and one
# commit, which is what keeps the window between the server's 250 and the record that short, and
# the pipeline near the speed of a bare SMTP loop. The record's line is the one event_values builds.
_SENT_AT_ONCE = text("""
WITH m AS (
    UPDATE message SET status = 'sent', error = NULL, sent_at = :sent, not_before = NULL, subject = :subj
    WHERE id = :pk AND status = 'sending'
    RETURNING id, kind, lead_id, enrollment_id, step_key, recipient, subject
), line AS (
    INSERT INTO event (lead_id, enrollment_id, at, kind, channel, key_points, status, next_follow_up_at, data)
    SELECT coalesce(m.lead_id, e.lead_id), m.enrollment_id, :sent,
           CASE WHEN m.kind = 'notify' THEN 'notice-sent' ELSE 'email-sent' END, 'email',
           CASE WHEN m.kind = 'notify' THEN 'to ' || m.recipient || ': ' || m.subject ELSE m.subject END,
           coalesce(l.status, ''), e.next_action_at,
           json_build_object('message', m.id, 'step', m.step_key, 'recovered', false)
    FROM m LEFT JOIN enrollment e ON e.id = m.enrollment_id LEFT JOIN lead l ON l.id = e.lead_id
), woken AS (
    UPDATE enrollment SET next_action_at = :sent
    WHERE id IN (
        SELECT e.id FROM enrollment e JOIN m ON m.enrollment_id = e.id AND m.kind = 'sequence'
        WHERE e.phase = 'active' AND (e.next_action_at IS NULL OR e.next_action_at > :sent)
        FOR UPDATE OF e SKIP LOCKED
    )
)
SELECT count(*) FROM m
""")


def _record_sent_at_once(conn: Connection, result: _Result, at: dt.datetime, renew: list[int], lease: dt.timedelta) -> Outcome:
    """PostgreSQL: a message sent, recorded in one statement committed by itself."""
    marked = conn.execute(_SENT_AT_ONCE, {"pk": result.work.pk, "sent": at, "subj": result.work.subject}).scalar_one()
    if renew:
        conn.execute(_RENEW, {"pks": renew, "until": at + lease})
    if not marked:
        return Outcome.DONE
    log.debug("message %d sent", result.work.pk)
    return Outcome.SENT


def _record_sent(session: Session, result: _Result, now: dt.datetime) -> Outcome:
    """What `_set_sent` does, for a message SMTP accepted, in statements built once: mark it sent
    (the first), then its line on the record (the line `record` writes), then wake its enrollment."""
    pk, subject = result.work.pk, result.work.subject
    conn = session.connection()
    if conn.execute(_MARK_SENT, {"pk": pk, "sent": now, "subj": subject}).rowcount == 0:
        return Outcome.DONE
    kind, lead_id, enrollment_id, step_key, recipient, enrollment_lead_id, next_action_at, lead_status = conn.execute(_SENT, {"pk": pk}).one()
    event, key_points = _sent_line(kind, recipient, subject)
    conn.execute(insert(_EVENT), [event_values(
        now, event, key_points, channel="email", lead_id=lead_id, enrollment_id=enrollment_id, enrollment_lead_id=enrollment_lead_id,
        lead_status=lead_status, next_follow_up_at=next_action_at, data={"message": pk, "step": step_key, "recovered": False},
    )])
    if kind == "sequence":
        wake(session, enrollment_id, now)
    log.debug("message %d sent", pk)
    return Outcome.SENT


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


def _set_sent(session: Session, message: Message, now: dt.datetime, *, recovered: bool = False) -> Outcome:
    message.status = "sent"
    message.error = None
    message.sent_at = message.sent_at or now
    message.not_before = None
    if recovered:
        message.saved_to_sent = True
        metrics.recovered()
    event, key_points = _sent_line(message.kind, message.recipient, message.subject)
    if recovered and event == "email-sent":
        key_points += " (found in Sent after an interrupted attempt)"
    _log_event(session, message, now, event, key_points, recovered=recovered)
    log.info("message %d sent%s", message.id, " (recovered)" if recovered else "")
    return Outcome.SENT


def _sent_line(kind: str, recipient: str, subject: str) -> tuple[str, str]:
    """The record's line for a message sent: mail to the team about the lead is on the record, but not as an email to the lead."""
    return ("notice-sent", f"to {recipient}: {subject}") if kind == "notify" else ("email-sent", subject)


def _set_drafted(session: Session, message: Message, now: dt.datetime) -> Outcome:
    message.status = "drafted"
    message.error = None
    message.not_before = None
    _log_event(session, message, now, "draft-saved", f"left in {message.sender}'s Drafts to personalise and send: {message.subject}")
    log.info("message %d left in Drafts", message.id)
    return Outcome.DRAFTED


def _log_event(session: Session, message: Message, now: dt.datetime, kind: str, key_points: str, **data: object) -> None:
    record(session, message.enrollment, now, kind, key_points, channel="email", lead_id=message.lead_id, message=message.id, step=message.step_key, **data)
    if kind != "send-deferred" and message.kind == "sequence":  # the message is done with, one way or another
        wake(session, message.enrollment_id, now)


def _retry(app: App, session: Session, message: Message, now: dt.datetime, error: str) -> Outcome:
    if message.attempts >= app.settings.workspace.max_attempts:
        message.status = "failed"
        message.error = f"gave up after {message.attempts} attempts; last: {error}"
        _log_event(session, message, now, "send-failed", message.error)
        log.warning("message %d dead-lettered: %s", message.id, message.error)
        return Outcome.FAILED
    message.status = "planned"
    message.sent_at = None
    message.error = error
    mailbox = message.mailbox
    if mailbox is not None and mailbox.day_count > 0 and _capped(message):
        mailbox.day_count -= 1  # it did not go out: it does not count toward today's cap
    message.not_before = now + backoff(message.attempts, random.Random(f"{message.message_id}:{message.attempts}"), app.settings.workspace.retry_after)
    message.enqueued_at = None
    _log_event(session, message, now, "send-deferred", f"attempt {message.attempts}: {error}; next try {message.not_before:%H:%M:%S} UTC")
    log.info("message %d: temporary failure (%s), retry at %s", message.id, error, message.not_before.isoformat())
    return Outcome.RETRY


def _bounce(app: App, session: Session, message: Message, now: dt.datetime, exc: RecipientRefused) -> Outcome:
    """The server refused the recipient at send time. As with a bounce report, its reason decides,
    not its first digit: a dead address is suppressed and the lead's sequence stops; a refusal about
    us (a block list, our domain's authentication, a policy) keeps the lead and holds its sequence on
    a task for the owner; a mailbox that cannot take mail now fails this step only, and counts as a
    soft bounce (the third suppresses, as it does for reports)."""
    from outreach.poller import refused  # the inbound path opens the same task for a report's refusal

    enrollment = message.enrollment
    assert enrollment is not None
    seq = app.definition(enrollment)
    reply = f"{exc.code or ''} {exc.reply}".strip()
    reason = refusal_reason(exc.code, exc.reply, exc.recipient)
    effect = seq.bounce_effect(reason, permanent=True)
    message.status = "failed"
    message.sent_at = None
    message.error = str(exc)
    soft = bounces.so_far(session, enrollment.lead_id) + 1 if effect is Effect.SOFT else 0
    if effect is Effect.SUPPRESS or soft >= bounces.LIMIT:
        app.feed(session, enrollment, eng.Bounced(at=now, hard=True))
        if seq.on_bounce == "suppress":
            suppress(session, exc.recipient.lower(), "bounce", reply, now)
        outcome = "the address is suppressed" if effect is Effect.SUPPRESS else f"{soft} soft bounces in a row: the address is suppressed"
        _log_event(session, message, now, "bounce", f"refused at send time ({reason.value}): {reply}; {outcome}", code=exc.code, cause=reason.value, effect=effect.value)
    elif effect is Effect.TASK:
        _log_event(session, message, now, "bounce", f"refused at send time ({reason.value}): {reply}; not the address's fault: the lead stays; a task for the owner", code=exc.code, cause=reason.value, effect=effect.value)
        refused(app, session, enrollment, enrollment.lead, reason, reply, f"refused:{message.id}", now, message=message.id)
    else:
        _log_event(session, message, now, "bounce", f"refused at send time ({reason.value}): {reply}; soft bounce {soft} of {bounces.LIMIT}: this step failed, the lead stays", code=exc.code, cause=reason.value, effect=effect.value)
    return Outcome.BOUNCED


def _after_answer(session: Session, message: Message, now: dt.datetime) -> Outcome | None:
    """The lead wrote in this thread: no follow-up if that stopped the enrollment; later if it paused it."""
    enrollment = message.enrollment
    if enrollment is None or enrollment.phase == eng.Phase.STOPPED.value:
        return _set_cancelled(session, message, now, "the lead answered in this thread before it was sent")
    if enrollment.phase == eng.Phase.PAUSED.value and enrollment.next_action_at is not None and enrollment.next_action_at > now:
        message.not_before = enrollment.next_action_at
        message.enqueued_at = None
        _log_event(session, message, now, "send-deferred", f"{message.step_key} waits until {enrollment.next_action_at:%Y-%m-%d %H:%M} UTC: the sequence is paused")
        return Outcome.DEFERRED
    return None


def _copy_to_sent(app: App, result: _Result, now: dt.datetime, *, mark: bool = True) -> None:
    address = result.work.mailbox
    cfg = app.mailbox_config(address)
    store = app.store(address)
    if cfg is None or cfg.imap is None or not cfg.imap.save_sent or store is None:
        return
    assert result.email is not None  # only a message that went out is copied
    try:
        store.append_sent(result.email.as_bytes(), now)
    except (TemporaryFailure, OutreachError, OSError) as exc:
        log.warning("message %d: the copy to Sent failed (%s); the message itself went out", result.work.pk, exc)
        return
    if mark:
        with transaction(app.sessions) as session:
            session.execute(update(Message).where(Message.id == result.work.pk).values(saved_to_sent=True))
