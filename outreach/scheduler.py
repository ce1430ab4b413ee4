"""The scheduler tick: due enrollments -> the engine -> outbox rows, tasks and events, in one transaction.

Safe in several processes at once: on PostgreSQL each tick locks the rows it takes with
FOR UPDATE SKIP LOCKED, so two schedulers never take the same enrollment; SQLite has one
writer. The cost follows the number of due rows (index on phase + next_action_at), not the
size of the table. Messages are handed to the broker by `relay()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from outreach.db.models import Enrollment, InboundMail, Mailbox, Message, Person, Task, Thread
from outreach.db.batch import assign_ids, insert_rows, is_postgres
from outreach.db.session import transaction
from outreach.logs import outage
from outreach.mail.compose import make_message_id
from outreach.sequences import engine as eng
from outreach.sequences.delays import Delay
from outreach.sequences.schema import Sequence
from outreach.service import IN_FLIGHT_CHECK, App, record, recorded_in_one_statement, save_state, state_from_json

log = logging.getLogger(__name__)

SCHEDULED = tuple(p.value for p in (eng.Phase.ACTIVE, eng.Phase.PAUSED, eng.Phase.ESCALATED, eng.Phase.DORMANT))
STALE_ENQUEUE = dt.timedelta(minutes=5)
FINISHED = ("sent", "drafted", "failed", "cancelled", "gone")  # an outbox message that will not change again ("gone": no row)
SEND_BATCH = 50  # messages per broker message: one mailbox, one SMTP connection, a few database round trips


@dataclass
class TickResult:
    enrollments: int = 0
    messages: list[int] = field(default_factory=list)
    tasks: int = 0
    revisits: int = 0


@dataclass
class _Batch:
    """What one tick knows about its enrollments, loaded in a few queries rather than per row."""

    planned: set[tuple[int, str]]  # (enrollment id, step key) that already have a message
    in_flight: dict[tuple[int, str], tuple[str, dt.datetime | None, dt.datetime | None]]  # the emails awaited: status, sent_at, not_before
    threads: dict[tuple[int, int], Thread | dict[str, Any]]  # a row read, or a new one (written with `rows`)
    messages: list[Message] = field(default_factory=list)  # outbox rows made as ORM objects (escalation)
    new_threads: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the steps' outbox rows, written in one executemany


def due_query(now: dt.datetime, batch: int, postgres: bool):  # type: ignore[no-untyped-def]
    query = (
        select(Enrollment)
        .where(Enrollment.phase.in_(SCHEDULED), Enrollment.next_action_at <= now)
        .order_by(Enrollment.next_action_at)
        .limit(batch)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=Enrollment)
    return query


def tick(app: App, *, now: dt.datetime | None = None, batch: int = 500) -> TickResult:
    """Do what is due now for up to `batch` enrollments."""
    now = now or app.clock.now()
    result = TickResult()
    with transaction(app.sessions) as session:
        enrollments = list(session.scalars(due_query(now, batch, is_postgres(session))).unique())
        if not enrollments:
            return result
        ids = [e.id for e in enrollments]
        awaited = {(e.id, e.state["sending"]) for e in enrollments if e.state.get("sending")}
        planned: set[tuple[int, str]] = set()
        in_flight = {}
        query = select(Message.enrollment_id, Message.step_key, Message.status, Message.sent_at, Message.not_before).where(Message.enrollment_id.in_(ids))
        for eid, key, status, sent_at, not_before in session.execute(query):
            planned.add((eid, key))
            if (eid, key) in awaited:
                in_flight[(eid, key)] = (status, sent_at, not_before)
        work = _Batch(
            planned=planned,
            in_flight=in_flight,
            threads={(t.enrollment_id, t.number): t for t in session.scalars(select(Thread).where(Thread.enrollment_id.in_(ids)))},
        )
        with session.no_autoflush, recorded_in_one_statement(session):
            for enrollment in enrollments:
                seq = app.definition(enrollment)
                _advance(app, session, enrollment, seq, now, result, work)
                result.enrollments += 1
        assign_ids(session)
        session.flush()
        _write_outbox(session, work)
        result.messages.extend(m.id for m in work.messages if m.status == "planned")
        result.messages.extend(row["id"] for row in work.rows if row["status"] == "planned")
    if result.enrollments:
        log.info("tick: %d enrollment(s), %d message(s) planned, %d task(s)", result.enrollments, len(result.messages), result.tasks)
    return result


def _advance(app: App, session: Session, enrollment: Enrollment, seq: Sequence, now: dt.datetime, result: TickResult, work: _Batch) -> None:
    lead = enrollment.lead
    mailbox = app.mailbox_for(session, seq, lead, enrollment.seed)
    cal = app.calendar_for(seq, lead, mailbox)
    state = state_from_json(enrollment.state)
    events: list[eng.Event] = []
    upcoming: dt.datetime | None = None
    if state.sending is not None:
        status, sent_at, not_before = work.in_flight.get((enrollment.id, state.sending), ("gone", None, None))
        if status in FINISHED:
            events.append(eng.EmailDone(at=min(sent_at or now, now), step_key=state.sending, sent=status == "sent"))
        elif not_before is not None and not_before > now:
            upcoming = not_before + IN_FLIGHT_CHECK  # held for a window, a cap or a backoff: look again once it may have gone
    decision = eng.decide(state, seq, events, now, cal)
    next_at = decision.next_action_at
    if next_at is None and upcoming is not None and decision.state.sending == state.sending:
        next_at = upcoming
    save_state(enrollment, decision.state, next_at, now)  # first: the record's lines carry the new status and date
    for action in decision.actions:
        _carry_out(app, session, enrollment, seq, mailbox, action, result, work)


def _event(session: Session, enrollment: Enrollment, at: dt.datetime, kind: str, key_points: str, channel: str = "system", **data: object) -> None:
    record(session, enrollment, at, kind, key_points, channel=channel, **data)


def _carry_out(app: App, session: Session, enrollment: Enrollment, seq: Sequence, mailbox: Mailbox | None, action: eng.Action, result: TickResult, work: _Batch) -> None:
    at = action.at
    if isinstance(action, eng.SendEmail):
        if (enrollment.id, action.step_key) in work.planned:
            return  # planned before: one message per (enrollment, step), ever
        work.planned.add((enrollment.id, action.step_key))
        message_id = make_message_id(mailbox.address.rpartition("@")[2] if mailbox else "localhost")
        thread = work.threads.get((enrollment.id, action.thread))
        if thread is None:
            thread = {"enrollment_id": enrollment.id, "number": action.thread, "subject": "", "root_message_id": message_id}
            work.new_threads.append(thread)
            work.threads[(enrollment.id, action.thread)] = thread
        error = None if mailbox else "no mailbox to send from: give the lead an owner with a mailbox, or name one in the sequence"
        work.rows.append({
            "direction": "out", "kind": "sequence", "body": None, "enrollment_id": enrollment.id, "lead_id": enrollment.lead_id,
            "thread": thread, "mailbox_id": mailbox.id if mailbox else None, "step_key": action.step_key, "template": action.template,
            "message_id": message_id, "in_reply_to": None, "references": None, "status": "planned" if mailbox else "failed",
            "subject": action.subject or "", "sender": mailbox.address if mailbox else "", "recipient": enrollment.lead.email,
            "planned_at": at, "not_before": at, "enqueued_at": None, "attempts": 0, "sent_at": None, "saved_to_sent": False,
            "error": error, "created_at": at,
        })
        if not mailbox:
            _event(session, enrollment, at, "send-failed", f"{action.step_key}: {error}", channel="email")
    elif isinstance(action, eng.CreateTask):
        context = app.context(session, seq, enrollment.lead, mailbox, action.step_id)
        where = app.sequences_location(seq.name)
        note = app.templates.render_string(action.note, context, where)
        title = app.templates.render_string(action.title, context, where) if action.title else f"{action.channel}: {enrollment.lead.email}"
        session.add(Task(enrollment_id=enrollment.id, lead_id=enrollment.lead_id, assignee_id=enrollment.lead.owner_id, step_key=action.step_key, channel=action.channel, title=title, note=note, due_at=action.due_at, wait=action.wait, status="open", created_at=at))
        _event(session, enrollment, at, "task-opened", title, channel=action.channel, step=action.step_key)
        result.tasks += 1
    elif isinstance(action, eng.Escalate):
        _escalate(app, session, enrollment, seq, mailbox, action, work)
    elif isinstance(action, eng.GoDormant):
        revisit = f"; revisit {action.revisit_at:%Y-%m-%d}" if action.revisit_at else ""
        _event(session, enrollment, at, "dormant", f"no answer{revisit}")
    elif isinstance(action, eng.Revisit):
        started = app.start_enrollment(session, enrollment.lead, action.then, at)
        _event(session, enrollment, at, "revisit", f"not enrolled in {action.then}: {started}" if isinstance(started, str) else f"enrolled in {action.then}")
        result.revisits += 1
    elif isinstance(action, eng.Complete):
        _event(session, enrollment, at, "completed", f"{seq.name} finished")
    elif isinstance(action, eng.Resume):
        _event(session, enrollment, at, "resumed", "the pause ended")


def _write_outbox(session: Session, work: _Batch) -> None:
    """The new threads, then the outbox rows that point to them (after the flush of the ORM objects,
    so a thread made by an escalation has its key too)."""
    insert_rows(session, Thread.__table__, work.new_threads)
    for row in work.rows:
        thread = row.pop("thread")
        row["thread_id"] = thread["id"] if isinstance(thread, dict) else thread.id
    insert_rows(session, Message.__table__, work.rows)


def _escalate(app: App, session: Session, enrollment: Enrollment, seq: Sequence, mailbox: Mailbox | None, action: eng.Escalate, work: _Batch) -> None:
    """No answer after the last step: the reviewer (the owner's manager, by default) gets a review
    task and an email with the thread's story; a personal message from the manager is sent or left
    in the manager's Drafts folder, as the sequence says."""
    at = action.at
    lead = enrollment.lead
    owner = lead.owner
    if action.notify == "manager":
        reviewer = reviewer_of(owner)
    elif action.notify == "owner":
        reviewer = owner
    else:
        reviewer = session.scalar(select(Person).where(Person.email == action.notify))
    reviewer_email = reviewer.email if reviewer else action.notify if "@" in action.notify else None
    who = reviewer.name if reviewer else reviewer_email or action.notify
    title = f"Review {lead.email}: no answer after {seq.name}"
    summary = escalation_summary(app, session, enrollment, seq)
    session.add(Task(enrollment_id=enrollment.id, lead_id=enrollment.lead_id, assignee_id=reviewer.id if reviewer else None, step_key="escalate", channel="review", title=title, note=summary, due_at=at, wait=False, status="open", created_at=at))
    record(session, enrollment, at, "escalated", f"no answer; {who} asked to review", notify=action.notify, reviewer=reviewer_email)
    if reviewer_email and mailbox is not None and (enrollment.id, "escalate-notify") not in work.planned:
        work.planned.add((enrollment.id, "escalate-notify"))
        name = lead.display_name
        subject = f"No answer from {name}{f' ({lead.company})' if lead.company else ''} after {seq.name}"
        _plan(session, enrollment, mailbox, None, "escalate-notify", None, reviewer_email, subject, at, work, kind="notify", body=summary)
    if action.message_template:
        sender_person = reviewer if action.message_from == "manager" else owner
        sender = sender_person.mailbox if sender_person else None
        if sender is None:
            record(session, enrollment, at, "escalation-message-skipped", f"{sender_person.name if sender_person else action.message_from} has no mailbox to send the personal message from")
        elif (enrollment.id, "escalate-message") not in work.planned:
            work.planned.add((enrollment.id, "escalate-message"))
            number = max((n for (eid, n) in work.threads if eid == enrollment.id), default=0) + 100  # its own thread
            thread = Thread(enrollment_id=enrollment.id, number=number, subject="", root_message_id=None)
            session.add(thread)
            work.threads[(enrollment.id, number)] = thread
            _plan(session, enrollment, sender, thread, "escalate-message", action.message_template, lead.email, "", at, work, kind="draft" if action.message_mode == "draft" else "sequence")


def reviewer_of(owner: Person | None) -> Person | None:
    """Who reviews an owner's leads: their manager, else (a manager of no one above) themselves."""
    return owner.manager if owner and owner.manager else owner


def _plan(session: Session, enrollment: Enrollment, mailbox: Mailbox, thread: Thread | None, step_key: str, template: str | None, recipient: str, subject: str, at: dt.datetime, work: _Batch, *, kind: str, body: str | None = None) -> Message:
    message = plan_message(session, enrollment, mailbox, thread, step_key, template, recipient, subject, at, kind=kind, body=body)
    work.messages.append(message)
    return message


def plan_message(session: Session, enrollment: Enrollment, mailbox: Mailbox, thread: Thread | None, step_key: str, template: str | None, recipient: str, subject: str, at: dt.datetime, *, kind: str, body: str | None = None) -> Message:
    """An outbox row, delivered like every other: limits, exactly once, the record."""
    message = Message(
        direction="out", kind=kind, body=body, enrollment_id=enrollment.id, lead_id=enrollment.lead_id, thread=thread, mailbox_id=mailbox.id,
        step_key=step_key, template=template, message_id=make_message_id(mailbox.address.rpartition("@")[2]), status="planned",
        subject=subject, sender=mailbox.address, recipient=recipient, planned_at=at, not_before=at, attempts=0, created_at=at,
    )
    session.add(message)
    return message


def escalate_answer(app: App, session: Session, enrollment: Enrollment, mail: InboundMail, at: dt.datetime, *, why: str, within: Delay) -> None:
    """A lead's reply needs the manager: negative feedback, or an answer overdue. A review task
    due within `within` (business time), an email with the reply, and a line on the record."""
    key = f"{'negative' if why == 'negative feedback' else 'sla'}:{mail.id}"  # once per reply and reason
    if session.scalar(select(Task.id).where(Task.enrollment_id == enrollment.id, Task.step_key == key)) is not None:
        return
    seq = app.definition(enrollment)
    lead = enrollment.lead
    owner = lead.owner
    reviewer = reviewer_of(owner)
    cal = app.enrollment_calendar(session, enrollment, seq)
    due = cal.after(at, within, random.Random(key))
    name = lead.display_name
    subject = f"{name}{f' ({lead.company})' if lead.company else ''}: {why}"
    body = "\n".join([
        f"{name} <{lead.email}> wrote on {mail.received_at.astimezone(cal.tz):%a %d %b %H:%M}:",
        "",
        *(f"  {line}" for line in (mail.new_text or mail.subject).splitlines()),
        "",
        f"Owner: {owner.name if owner else 'nobody'}. Please take it up by {due.astimezone(cal.tz):%a %d %b %H:%M}.",
        f"  outreach lead show {lead.email}",
    ]) + "\n"
    session.add(Task(enrollment_id=enrollment.id, lead_id=lead.id, assignee_id=reviewer.id if reviewer else None, step_key=key, channel="review", title=f"{why.capitalize()}: {name}", note=body, due_at=due, wait=False, status="open", created_at=at))
    record(session, enrollment, at, "escalated", f"{why}; {reviewer.name if reviewer else 'the owner'} asked to take it up by {due:%Y-%m-%d %H:%M} UTC", reason=why, inbound=mail.id)
    mailbox = app.mailbox_for(session, seq, lead, enrollment.seed)
    if reviewer is not None and mailbox is not None:
        plan_message(session, enrollment, mailbox, None, key, None, reviewer.email, subject, at, kind="notify", body=body)


# open answer tasks not yet escalated: the SLA's clock
UNANSWERED = (Task.status == "open", Task.step_key.like("answer:%"), Task.outcome.is_(None), Task.enrollment_id.is_not(None))


def escalate_unanswered(app: App, *, now: dt.datetime | None = None) -> int:
    """Replies whose answer task is past due (the sequence's reply_sla) go to the manager, once each."""
    now = now or app.clock.now()
    count = 0
    with transaction(app.sessions) as session:
        overdue = session.scalars(select(Task).where(*UNANSWERED, Task.due_at <= now).order_by(Task.due_at).limit(200))
        for task in list(overdue):
            task.outcome = "escalated: not answered in time"  # still open for the owner; escalated once
            mail = session.get(InboundMail, int((task.step_key or "answer:0").split(":")[1]))
            enrollment = session.get(Enrollment, task.enrollment_id)
            if mail is None or enrollment is None:
                continue
            seq = app.definition(enrollment)
            escalate_answer(app, session, enrollment, mail, now, why=f"reply not answered within {seq.reply_sla}", within=Delay.parse("4 business hours"))
            count += 1
    return count


def escalation_summary(app: App, session: Session, enrollment: Enrollment, seq: Sequence) -> str:
    """The thread's story for the reviewer: who, what was sent when, what came back, where to look."""
    lead = enrollment.lead
    cal = app.enrollment_calendar(session, enrollment, seq)
    name = lead.display_name
    lines = [f"{name}{f', {lead.title}' if lead.title else ''}{f' at {lead.company}' if lead.company else ''} <{lead.email}>"]
    if lead.owner:
        lines.append(f"Owner: {lead.owner.name}")
    lines += ["", f"{seq.name} ({seq.description})" if seq.description else seq.name, ""]
    sent = session.scalars(select(Message).where(Message.enrollment_id == enrollment.id, Message.direction == "out", Message.status == "sent").order_by(Message.sent_at))
    for message in sent:
        when = message.sent_at.astimezone(cal.tz) if message.sent_at else None
        lines.append(f"  {when:%a %d %b %H:%M} email   {message.subject}" if when else f"  email   {message.subject}")
    for task in session.scalars(select(Task).where(Task.enrollment_id == enrollment.id, Task.channel != "review").order_by(Task.due_at)):
        lines.append(f"  {task.due_at.astimezone(cal.tz):%a %d %b}       {task.channel:<7} {task.title} ({task.status}{f': {task.outcome}' if task.outcome else ''})")
    for mail in session.scalars(select(InboundMail).where(InboundMail.enrollment_id == enrollment.id).order_by(InboundMail.received_at)):
        lines.append(f"  {mail.received_at.astimezone(cal.tz):%a %d %b %H:%M} {mail.kind.replace('_', '-'):<7} {mail.subject}")
    lines += ["", "No answer yet. Open the record:", f"  outreach lead show {lead.email}"]
    return "\n".join(lines) + "\n"


def relay(app: App, enqueue: Callable[[list[int]], object], *, now: dt.datetime | None = None, batch: int = 1000, per_message: int = SEND_BATCH) -> list[int]:
    """Hand due planned messages that are not (or no longer) with the broker to it, in batches of at
    most `per_message` ids from one mailbox (one broker message each); the ids handed over.

    A message is marked as with the broker only once the broker took it: when the broker is away,
    what it did not take is due again at the next round, seconds later. The rows are locked
    meanwhile (PostgreSQL), so two schedulers do not hand over the same message; one that dies
    between the broker's yes and the commit has it handed over twice, which delivery takes in its
    stride (a message id may come any number of times)."""
    now = now or app.clock.now()
    handed: list[int] = []
    with transaction(app.sessions) as session:
        query = (
            select(Message.id, Message.sender)
            .where(
                Message.direction == "out",
                Message.status.in_(("planned", "sending")),
                Message.not_before <= now,
                or_(Message.enqueued_at.is_(None), Message.enqueued_at < now - STALE_ENQUEUE),
            )
            .order_by(Message.not_before)
            .limit(batch)
        )
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True, of=Message)
        by_mailbox: dict[str, list[int]] = {}
        for pk, sender in session.execute(query):
            by_mailbox.setdefault(sender, []).append(pk)
        due = sum(len(ids) for ids in by_mailbox.values())
        for ids in (ids[i : i + per_message] for ids in by_mailbox.values() for i in range(0, len(ids), per_message)):
            try:
                enqueue(ids)
            except Exception as exc:  # the broker is away: what it took is marked, the rest waits for the next round
                reason = outage(exc)
                if reason is None:
                    raise
                log.warning("the broker did not take %d message(s): %s; handing them over again next round", due - len(handed), reason, extra={"event": "handover-failed", "waiting": due - len(handed), "reason": reason})
                break
            handed.extend(ids)
        if handed:
            session.execute(update(Message).where(Message.id.in_(handed)).values(enqueued_at=now))
    return handed


def dead_letters(session: Session) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.direction == "out", Message.status == "failed").order_by(Message.id)))

