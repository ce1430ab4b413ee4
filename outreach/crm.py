"""The CRM side of the service: tasks to work, a lead's record, outcomes, KPIs, retention and erasure.

Plain functions over an App and its sessions. They return data and print nothing, so the CLI and
the embedded demo show the same numbers. Everything a person changes goes through the engine
(`App.feed`), the way a reply or a pause does, so a sequence waiting for a task goes on by itself.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import difflib
import enum
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select
from sqlalchemy.orm import Session

from outreach.clock import ensure_utc
from outreach.db.models import (
    Enrollment,
    Event,
    InboundMail,
    Lead,
    Mailbox,
    Message,
    Person,
    Suppression,
    Task,
    Thread,
)
from outreach.db.session import transaction
from outreach.errors import Conflict, InputError, Location, NotFound, Problem
from outreach.leads import normalise_address
from outreach.sequences import engine as eng
from outreach.sequences.calendar import zone
from outreach.service import ACTIVE_PHASES, App, suppress

CRM_STATUSES = tuple(s.value for s in eng.CrmStatus)
OPEN = "open"
CLOSED = "closed"  # a task nobody needs to work any more: its lead was won or lost
# outbound mail a retention period covers: what went out or never will, and drafts, which live
# on in the mailbox's Drafts folder whatever becomes of the row
RETAINED_MESSAGES = ("sent", "failed", "cancelled", "drafted")


class Outcome(enum.StrEnum):
    """What a person records about a lead; won and lost end its sequences."""

    MEETING_BOOKED = "meeting-booked"
    PROPOSAL_SENT = "proposal-sent"
    WON = "won"
    LOST = "lost"


# ---- people and leads ------------------------------------------------------------------------------


def find_lead(app: App, session: Session, email: str) -> Lead:
    """The lead with this address; a typo gets the nearest address back, so the next try works."""
    try:
        return app.lead(session, email)
    except NotFound:
        key = normalise_address(email)
        hint = _did_you_mean(session, key)
        if hint is None:
            raise
        raise NotFound(f"no lead {key}; did you mean {hint}?") from None


def _did_you_mean(session: Session, key: str) -> str | None:
    """Candidates share the mailbox name, the domain or the first letters: typos rarely touch all three."""
    local, _, domain = key.partition("@")
    query = (
        select(Lead.email)
        .where(or_(Lead.email.like(f"{_like(local)}@%", escape="\\"), Lead.email.like(f"%@{_like(domain)}", escape="\\"), Lead.email.like(f"{_like(key[:3])}%", escape="\\")))
        .limit(5000)
    )
    found = difflib.get_close_matches(key, list(session.scalars(query)), n=1, cutoff=0.75)
    return found[0] if found else None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def resolve_owner(app: App, owner: str) -> str:
    """A team member's address, from their address or their name (as the leads CSV accepts them)."""
    wanted = owner.strip().lower()
    team = app.settings.workspace.team
    for person in team:
        if wanted in (person.email, person.name.lower()):
            return person.email
    known = [p.email for p in team]
    hint = difflib.get_close_matches(wanted, known, n=1)
    suggestion = f"did you mean {hint[0]}? " if hint else ""
    raise NotFound(f"{owner!r} is not in the team in outreach.yaml; {suggestion}the team: {', '.join(known) or '(nobody)'}")


def person_zone(app: App, person: Person | None) -> str:
    """Where a person reads times: their mailbox's zone, else the workspace's."""
    if person is not None and person.mailbox is not None and person.mailbox.timezone:
        return person.mailbox.timezone
    return app.settings.workspace.timezone


def next_follow_up(session: Session, lead_id: int) -> dt.datetime | None:
    """The next thing a running sequence will do for the lead."""
    when = session.scalar(select(func.min(Enrollment.next_action_at)).where(Enrollment.lead_id == lead_id, Enrollment.phase.in_(ACTIVE_PHASES)))
    return ensure_utc(when) if when is not None else None



def log_event(session: Session, lead: Lead, enrollment: Enrollment | None, at: dt.datetime, kind: str, key_points: str, *, channel: str, **data: object) -> None:
    """One line of the CRM record, with the lead's status and next follow-up as they are after it."""
    session.add(Event(lead_id=lead.id, enrollment_id=enrollment.id if enrollment else None, at=at, kind=kind, channel=channel, key_points=key_points, status=lead.status, next_follow_up_at=next_follow_up(session, lead.id), data=dict(data)))


# ---- tasks -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskItem:
    id: int
    due_at: dt.datetime
    zone: str  # the assignee's zone, for showing due_at
    channel: str
    title: str
    status: str
    overdue: bool
    lead_name: str
    company: str
    email: str
    assignee: str


def list_tasks(app: App, session: Session, *, owner: str | None = None, overdue_only: bool = False, include_closed: bool = False) -> list[TaskItem]:
    """Tasks by due date: open ones, or all with `include_closed`; only late ones with `overdue_only`."""
    now = app.clock.now()
    query = select(Task, Lead, Person).outerjoin(Lead, Lead.id == Task.lead_id).outerjoin(Person, Person.id == Task.assignee_id).order_by(Task.due_at, Task.id)
    if owner is not None:
        query = query.where(Person.email == resolve_owner(app, owner))
    if overdue_only:
        query = query.where(Task.status == OPEN, Task.due_at < now)
    elif not include_closed:
        query = query.where(Task.status == OPEN)
    return [_task_item(app, task, lead, person, now) for task, lead, person in session.execute(query)]


def _task_item(app: App, task: Task, lead: Lead | None, person: Person | None, now: dt.datetime) -> TaskItem:
    return TaskItem(
        id=task.id,
        due_at=task.due_at,
        zone=person_zone(app, person),
        channel=task.channel,
        title=task.title,
        status=task.status,
        overdue=task.status == OPEN and task.due_at < now,
        lead_name=lead.display_name if lead else "",
        company=lead.company if lead else "",
        email=lead.email if lead else "",
        assignee=person.name if person else "",
    )


@dataclass(frozen=True)
class FinishedTask:
    id: int
    status: str  # done | skipped
    email: str
    sequence: str | None
    phase: str | None  # the enrollment's phase after the task
    next_action_at: dt.datetime | None
    zone: str  # the lead owner's, for showing next_action_at


def finish_task(app: App, task_id: int, *, outcome: str | None, skipped: bool = False) -> FinishedTask:
    """Close an open task (done, with what came of it; or skipped) and tell its sequence."""
    text = " ".join((outcome or "").split())
    if not skipped and not text:
        raise InputError(Problem(Location("--outcome"), 'say what came of it, e.g. --outcome "spoke to Ananya; decision on Friday"'))
    now = app.clock.now()
    with transaction(app.sessions) as session:
        task = session.get(Task, task_id, with_for_update=True)
        if task is None:
            raise NotFound(f"no task #{task_id}; `outreach tasks` lists the open ones")
        if task.status != OPEN:
            raise Conflict(f"task #{task_id} is already {task.status}" + (f" ({task.outcome})" if task.outcome else "") + "; nothing was changed")
        task.status, task.outcome, task.done_at = ("skipped" if skipped else "done"), text or None, now
        enrollment = session.get(Enrollment, task.enrollment_id) if task.enrollment_id is not None else None
        if enrollment is not None and task.step_key:
            app.feed(session, enrollment, eng.TaskFinished(at=now, step_key=task.step_key, skipped=skipped))
        lead = session.get(Lead, task.lead_id) if task.lead_id is not None else None
        if lead is not None:
            kind = "task-skipped" if skipped else "task-done"
            log_event(session, lead, enrollment, now, kind, text or f"skipped: {task.title}", channel=task.channel, task=task.id, step=task.step_key)
        return FinishedTask(
            id=task.id,
            status=task.status,
            email=lead.email if lead else "",
            sequence=enrollment.sequence_name if enrollment else None,
            phase=enrollment.phase if enrollment else None,
            next_action_at=enrollment.next_action_at if enrollment else None,
            zone=person_zone(app, lead.owner if lead else None),
        )


# ---- the lead's record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    channel: str
    kind: str
    key_points: str
    status: str
    next_follow_up_at: dt.datetime | None


@dataclass(frozen=True)
class EnrollmentSummary:
    sequence: str
    version: int
    phase: str
    last_step: str | None
    next_action_at: dt.datetime | None


@dataclass(frozen=True)
class LeadRecord:
    email: str
    name: str
    company: str
    title: str
    owner: str  # "Name <address>", or "" without one
    status: str
    next_follow_up_at: dt.datetime | None
    zone: str  # the owner's zone, for showing times
    enrollments: list[EnrollmentSummary]
    timeline: list[TimelineEntry]


def lead_record(app: App, session: Session, email: str) -> LeadRecord:
    """Who the lead is, where they stand, and every interaction in date order."""
    lead = find_lead(app, session, email)
    enrollments = session.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id).order_by(Enrollment.id))
    events = session.scalars(select(Event).where(Event.lead_id == lead.id).order_by(Event.at, Event.id))
    return LeadRecord(
        email=lead.email,
        name=lead.display_name,
        company=lead.company,
        title=lead.title,
        owner=f"{lead.owner.name} <{lead.owner.email}>" if lead.owner else "",
        status=lead.status,
        next_follow_up_at=next_follow_up(session, lead.id),
        zone=person_zone(app, lead.owner),
        enrollments=[EnrollmentSummary(e.sequence_name, e.sequence.version, e.phase, e.state.get("last_step"), e.next_action_at) for e in enrollments],
        timeline=[TimelineEntry(e.at, e.channel, e.kind, e.key_points, e.status, e.next_follow_up_at) for e in events],
    )


TIMELINE_COLUMNS = ("at", "channel", "kind", "key_points", "status", "next_follow_up_at")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_timeline_csv(record: LeadRecord, path: Path) -> int:
    """The timeline as CSV (times in ISO 8601 UTC); the number of rows written.

    A lead's own words end up in these cells: a cell a spreadsheet would run as a formula
    (=, +, -, @) gets a leading apostrophe, so opening the file runs nothing."""
    rows = [(_iso(e.at), _cell(e.channel), _cell(e.kind), _cell(e.key_points), _cell(e.status), _iso(e.next_follow_up_at)) for e in record.timeline]
    _write_csv(path, TIMELINE_COLUMNS, rows)
    return len(rows)


def _write_csv(path: Path, header: Seq[str], rows: Seq[Seq[object]]) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise InputError(Problem(Location("--csv"), f"cannot write {path}: {exc.strerror or exc}; name a file in a folder that exists")) from exc


def _iso(when: dt.datetime | None) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if when else ""


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True)
class Marked:
    email: str
    outcome: Outcome
    status: str
    stopped: list[str]  # sequences ended by a won or lost
    closed_tasks: list[int]  # open tasks a won or lost closed


def mark(app: App, email: str, outcome: Outcome, note: str | None = None) -> Marked:
    """Record an outcome; won and lost end the lead's running sequences, close its open tasks
    (calls, answers, reviews) and close the lead."""
    now = app.clock.now()
    text = " ".join((note or "").split())
    with transaction(app.sessions) as session:
        lead = find_lead(app, session, email)
        stopped: list[str] = []
        closed: list[Task] = []
        if outcome in (Outcome.WON, Outcome.LOST):
            stopped = [e.sequence_name for e in app.feed_lead(session, lead, eng.Unenrolled(at=now, reason=f"marked {outcome.value}"))]
            lead.status, lead.updated_at = eng.CrmStatus.CLOSED.value, now
            closed = list(session.scalars(select(Task).where(Task.lead_id == lead.id, Task.status == OPEN).order_by(Task.due_at, Task.id).with_for_update()))
        points = outcome.value + (f": {text}" if text else "") + (f"; stopped {', '.join(stopped)}" if stopped else "") + (f"; closed {len(closed)} open task(s)" if closed else "")
        log_event(session, lead, None, now, "outcome", points, channel="manual", outcome=outcome.value, note=text or None, stopped=stopped, closed_tasks=[t.id for t in closed])
        for task in closed:  # nobody is to call or answer a lead that is won or lost
            why = f"lead {outcome.value}"
            task.status, task.outcome, task.done_at = CLOSED, why, now
            enrollment = session.get(Enrollment, task.enrollment_id) if task.enrollment_id is not None else None
            log_event(session, lead, enrollment, now, "task-closed", f"task closed: {why}: {task.title}", channel=task.channel, task=task.id, step=task.step_key)
        return Marked(email=lead.email, outcome=outcome, status=lead.status, stopped=stopped, closed_tasks=[t.id for t in closed])


# ---- KPIs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    """One KPI from the design: a value (a fraction, or seconds), its target, and what it rests on."""

    name: str
    value: float | None  # None: nothing to measure (the denominator is 0)
    unit: str  # "ratio" | "seconds"
    target: float | None  # None: no target, just watched
    at_most: bool = False  # the target is a ceiling (response time), not a floor
    basis: str = ""  # e.g. "2 of 4 leads"

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target

    @property
    def shown_unit(self) -> str:
        return "%" if self.unit == "ratio" else "h"

    def shown(self, value: float | None) -> float | None:
        """A fraction as a percentage, seconds as hours: the way people state these targets."""
        if value is None:
            return None
        return round(value * 100 if self.unit == "ratio" else value / 3600, 1)

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'≤' if self.at_most else '≥'} {self.shown(self.target):g} {self.shown_unit}"


@dataclass(frozen=True)
class Report:
    """Lead KPIs follow the leads enrolled since `since` (all when None); mail counts and response
    times count what happened since then; tasks and statuses are as they are now."""

    since: dt.datetime | None
    leads_enrolled: int
    leads_replied: int
    leads_met: int  # leads that replied and booked a meeting
    leads_proposed: int  # leads that met and were sent a proposal
    emails_sent: int
    replies: int
    auto_replies: int
    bounces: int
    unsubscribes: int
    response_seconds: list[float]
    open_tasks: int
    overdue_tasks: int
    statuses: dict[str, int]
    bounce_reasons: dict[str, int]  # bounces by reason, most frequent first

    @property
    def kpis(self) -> list[Kpi]:
        p90 = self.response_p90
        return [
            Kpi("follow-up success rate", _ratio(self.leads_replied, self.leads_enrolled), "ratio", SUCCESS_TARGET, basis=f"{self.leads_replied} of {self.leads_enrolled} leads enrolled replied"),
            Kpi("response time", self.response_median, "seconds", RESPONSE_TARGET, at_most=True, basis=f"median of {len(self.response_seconds)} answer(s)" + (f"; p90 {p90 / 3600:.1f} h" if p90 is not None else "")),
            Kpi("engagement", _ratio(self.replies, self.emails_sent), "ratio", None, basis=f"{self.replies} replies to {self.emails_sent} emails sent"),
            Kpi("meeting conversion", _ratio(self.leads_met, self.leads_replied), "ratio", MEETING_TARGET, basis=f"{self.leads_met} of {self.leads_replied} leads that replied booked a meeting"),
            Kpi("proposal conversion", _ratio(self.leads_proposed, self.leads_met), "ratio", PROPOSAL_TARGET, basis=f"{self.leads_proposed} of {self.leads_met} leads met were sent a proposal"),
        ]

    @property
    def counts(self) -> dict[str, int]:
        return {
            "emails sent": self.emails_sent,
            "replies": self.replies,
            "auto-replies": self.auto_replies,
            "bounces": self.bounces,
            "unsubscribes": self.unsubscribes,
            "open tasks": self.open_tasks,
            "overdue tasks": self.overdue_tasks,
        }

    @property
    def response_median(self) -> float | None:
        return statistics.median(self.response_seconds) if self.response_seconds else None

    @property
    def response_p90(self) -> float | None:
        """Nearest rank: the smallest wait that nine answers in ten did not exceed."""
        ordered = sorted(self.response_seconds)
        return ordered[math.ceil(0.9 * len(ordered)) - 1] if ordered else None


SUCCESS_TARGET = 0.60
RESPONSE_TARGET = 24 * 3600.0
MEETING_TARGET = 0.30
PROPOSAL_TARGET = 0.20


def report(app: App, session: Session, *, since: dt.datetime | None = None) -> Report:
    """The KPIs of the design with their targets, and the counts behind them."""
    now = app.clock.now()
    cohort = select(Enrollment.lead_id).where(*_after(Enrollment.enrolled_at, since))
    replied = _leads_with(Event.kind == "reply", cohort, since)
    met = _leads_with(_is_meeting(), replied, since)
    proposed = _leads_with(_is_outcome(Outcome.PROPOSAL_SENT), met, since)
    return Report(
        since=since,
        leads_enrolled=_count(session, select(func.count(func.distinct(Enrollment.lead_id))).where(*_after(Enrollment.enrolled_at, since))),
        leads_replied=_count_leads(session, replied),
        leads_met=_count_leads(session, met),
        leads_proposed=_count_leads(session, proposed),
        emails_sent=_count(session, select(func.count()).select_from(Message).where(Message.direction == "out", Message.kind == "sequence", Message.status == "sent", *_after(Message.sent_at, since))),  # to leads, not the team's notices
        replies=_events(session, ("reply",), since),
        auto_replies=_events(session, ("auto-reply",), since),
        bounces=_events(session, ("bounce",), since),
        unsubscribes=_events(session, ("unsubscribe", "complaint"), since),
        response_seconds=_response_times(session, since),
        open_tasks=_count(session, select(func.count()).select_from(Task).where(Task.status == OPEN)),
        overdue_tasks=_count(session, select(func.count()).select_from(Task).where(Task.status == OPEN, Task.due_at < now)),
        statuses=_statuses(session),
        bounce_reasons=bounce_reasons(session, since),
    )


def bounce_reasons(session: Session, since: dt.datetime | None) -> dict[str, int]:
    """How many bounces each reason had (userunknown, mailboxfull, blocked ...), most frequent first."""
    counts: Counter[str] = Counter()
    for data in session.scalars(select(Event.data).where(Event.kind == "bounce", *_after(Event.at, since))):
        counts[str((data or {}).get("cause") or "undefined")] += 1
    return dict(counts.most_common())


def refusals_by_mailbox(session: Session, since: dt.datetime | None) -> dict[str, dict[str, int]]:
    """Bounces that said something about our sending (block lists, spam filters, authentication, policy)
    rather than about a lead's address, per mailbox they came back to, by reason."""
    found: dict[str, Counter[str]] = {}
    rows = session.execute(
        select(Mailbox.address, InboundMail.evidence).join(Mailbox, InboundMail.mailbox_id == Mailbox.id).where(InboundMail.kind == "bounce", *_after(InboundMail.received_at, since))
    )
    for address, evidence in rows:
        if (evidence or {}).get("effect") == "task":
            found.setdefault(address, Counter())[str(evidence.get("cause") or "undefined")] += 1
    return {address: dict(counts.most_common()) for address, counts in sorted(found.items())}


REPORT_COLUMNS = ("metric", "value", "unit", "target", "met", "basis")


def write_report_csv(found: Report, path: Path) -> None:
    """The report as CSV: a row per KPI (percentages, hours; empty where there is nothing to measure), then the counts."""
    rows: list[tuple[object, ...]] = []
    for kpi in found.kpis:
        met = "" if kpi.met is None else ("yes" if kpi.met else "no")
        value = kpi.shown(kpi.value)
        rows.append((kpi.name, "" if value is None else value, kpi.shown_unit, kpi.target_text, met, kpi.basis))
    p90 = found.response_p90
    rows.append(("response time p90", "" if p90 is None else round(p90 / 3600, 1), "h", "", "", f"over {len(found.response_seconds)} answer(s)"))
    rows.extend((name, count, "", "", "", "") for name, count in found.counts.items())
    rows.extend((f"leads {status}", count, "", "", "", "CRM status now") for status, count in found.statuses.items())
    rows.extend((f"bounces {reason}", count, "", "", "", "bounces by reason") for reason, count in found.bounce_reasons.items())
    _write_csv(path, REPORT_COLUMNS, rows)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _after(column: Any, since: dt.datetime | None) -> list[ColumnElement[bool]]:
    return [] if since is None else [column >= since]


def _is_outcome(outcome: Outcome) -> ColumnElement[bool]:
    return (Event.kind == "outcome") & (Event.data["outcome"].as_string() == outcome.value)


def _is_meeting() -> ColumnElement[bool]:
    return or_(Event.kind == "meeting", _is_outcome(Outcome.MEETING_BOOKED))


def _leads_with(condition: ColumnElement[bool], among: Select[Any], since: dt.datetime | None) -> Select[Any]:
    """The leads, of those `among`, with an event matching `condition` since `since`."""
    return select(Event.lead_id).where(condition, Event.lead_id.in_(among), *_after(Event.at, since))


def _count_leads(session: Session, leads: Select[Any]) -> int:
    return _count(session, select(func.count()).select_from(leads.distinct().subquery()))


def _count(session: Session, query: Select[Any]) -> int:
    return int(session.scalar(query) or 0)


def _events(session: Session, kinds: Seq[str], since: dt.datetime | None) -> int:
    return _count(session, select(func.count()).select_from(Event).where(Event.kind.in_(kinds), *_after(Event.at, since)))


def _response_times(session: Session, since: dt.datetime | None) -> list[float]:
    """How long leads waited for the owner's own answer (the poller measures it from the Sent folder)."""
    rows = session.scalars(select(Event.data).where(Event.kind == "owner-replied", *_after(Event.at, since)))
    return [float(data["response_seconds"]) for data in rows if data.get("response_seconds") is not None]


def _statuses(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(CRM_STATUSES, 0)
    for status, count in session.execute(select(Lead.status, func.count()).group_by(Lead.status)):
        counts[status] = count
    return counts


def parse_date(text: str, tz: str) -> dt.datetime:
    """YYYY-MM-DD as the start of that day in the zone given (the workspace's, for reports)."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(Problem(Location("--since"), f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-01-01")) from None
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone(tz)).astimezone(dt.timezone.utc)


# ---- retention and erasure --------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+)\s*(d|days?|w|weeks?|mo|months?|y|yrs?|years?)\s*$", re.IGNORECASE)
AGE_FORMS = "90days, 12months, 18 months, 2y (units: days, weeks, months, years)"


@dataclass(frozen=True)
class Age:
    """A retention period, counted back on the calendar (1 month before 31 March is 28 or 29 February)."""

    amount: int
    unit: str  # days | weeks | months

    def before(self, now: dt.datetime) -> dt.datetime:
        if self.unit == "days":
            return now - dt.timedelta(days=self.amount)
        if self.unit == "weeks":
            return now - dt.timedelta(weeks=self.amount)
        year, index = divmod(now.year * 12 + now.month - 1 - self.amount, 12)
        month = index + 1
        return now.replace(year=year, month=month, day=min(now.day, calendar.monthrange(year, month)[1]))


def parse_age(text: str) -> Age:
    found = _AGE.match(text)
    if found is None or int(found.group(1)) == 0:
        raise InputError(Problem(Location("--older-than"), f"{text!r} is not a retention period; write a number and a unit: {AGE_FORMS}"))
    amount, unit = int(found.group(1)), found.group(2).lower()
    if unit.startswith("y"):
        return Age(amount * 12, "months")
    if unit.startswith("mo"):
        return Age(amount, "months")
    return Age(amount, "weeks" if unit.startswith("w") else "days")


@dataclass(frozen=True)
class Purge:
    cutoff: dt.datetime
    counts: dict[str, int]  # what is (or would be) deleted, per kind of row
    suppressions: int  # kept, always
    done: bool


def purge(app: App, older_than: Age, *, execute: bool) -> Purge:
    """Delete the activity log, inbound mail and outbound mail (sent, failed, cancelled or left as a
    draft) older than the period.

    Suppressions stay, whatever their age: they are what keeps a bounced or opted-out address
    from being mailed again. Leads, enrollments and tasks stay too. Without `execute`, only counts."""
    try:
        cutoff = older_than.before(app.clock.now())
    except (ValueError, OverflowError):
        raise InputError(Problem(Location("--older-than"), f"{older_than.amount} {older_than.unit} ago is before the calendar starts; give a shorter period")) from None
    scope = [
        ("events", Event, Event.at < cutoff),
        ("inbound mail", InboundMail, InboundMail.received_at < cutoff),
        ("outbound messages", Message, (Message.direction == "out") & Message.status.in_(RETAINED_MESSAGES) & (func.coalesce(Message.sent_at, Message.created_at) < cutoff)),
    ]
    with transaction(app.sessions) as session:
        counts = _apply(session, scope, execute)
        kept = _count(session, select(func.count()).select_from(Suppression))
    return Purge(cutoff=cutoff, counts=counts, suppressions=kept, done=execute)


def _apply(session: Session, scope: list[tuple[str, Any, ColumnElement[bool]]], execute: bool) -> dict[str, int]:
    """Count each part of the scope, and delete it when asked, in the order given."""
    counts = {}
    for label, model, condition in scope:
        counts[label] = _count(session, select(func.count()).select_from(model).where(condition))
        if execute and counts[label]:
            session.execute(delete(model).where(condition), execution_options={"synchronize_session": False})
    return counts


@dataclass(frozen=True)
class Erasure:
    email: str
    counts: dict[str, int]
    suppression: str  # "kept" (it was suppressed already) or "added"
    done: bool


def forget(app: App, email: str, *, execute: bool) -> Erasure:
    """Erase a person: the lead and everything recorded about them, keeping only a suppression of
    the address, so that no later import or enrollment mails them again. Without `execute`, only counts."""
    now = app.clock.now()
    with transaction(app.sessions) as session:
        lead = find_lead(app, session, email)
        address = lead.email
        enrollments = list(session.scalars(select(Enrollment.id).where(Enrollment.lead_id == lead.id)))
        scope = [
            ("inbound mail", InboundMail, or_(InboundMail.lead_id == lead.id, InboundMail.enrollment_id.in_(enrollments), InboundMail.sender == address)),
            ("messages", Message, or_(Message.lead_id == lead.id, Message.enrollment_id.in_(enrollments), Message.recipient == address)),
            ("events", Event, or_(Event.lead_id == lead.id, Event.enrollment_id.in_(enrollments))),
            ("tasks", Task, or_(Task.lead_id == lead.id, Task.enrollment_id.in_(enrollments))),
            ("threads", Thread, Thread.enrollment_id.in_(enrollments)),
            ("enrollments", Enrollment, Enrollment.id.in_(enrollments)),
            ("lead", Lead, Lead.id == lead.id),
        ]
        counts = _apply(session, scope, execute)
        present = session.scalar(select(Suppression.id).where(Suppression.email == address)) is not None
        if execute and not present:
            suppress(session, address, "forgotten", "erased on request", now)
    return Erasure(email=address, counts=counts, suppression="kept" if present else "added", done=execute)
