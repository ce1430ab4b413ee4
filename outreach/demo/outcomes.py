"""What happened, read back from the database: the CRM record lines each round wrote (for the
progress display), and what became of each lead, in a few words per turn."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from outreach.db.models import Enrollment, Event, Lead, Message
from outreach.demo.cast import Behaviour, Persona
from outreach.sequences.calendar import zone
from outreach.service import App


@dataclass(frozen=True)
class LeadOutcome:
    email: str
    name: str
    company: str
    owner: str
    sequences: tuple[str, ...]  # in the order the lead was enrolled (a revisit adds one)
    phases: tuple[str, ...]  # the final phase of each of those enrollments
    status: str  # the CRM status
    emails: int  # sequence emails that reached the lead
    behaviour: Behaviour
    story: str  # what happened, for a person


@dataclass(frozen=True)
class Happening:
    """One line of a lead's CRM record as it was written, for the progress display."""

    at: dt.datetime
    kind: str
    lead: str  # "Ananya Rao (Acme Logistics)"
    owner: str
    channel: str
    text: str
    data: dict[str, Any]
    to_lead: bool  # an email-sent that went to the lead, not a notice to the team


def happened_since(app: App, after: int) -> tuple[list[Happening], int]:
    """The CRM record lines written since event `after`, in the order they happened."""
    with app.sessions() as session:
        rows = session.execute(select(Event, Lead).outerjoin(Lead, Event.lead_id == Lead.id).where(Event.id > after).order_by(Event.at, Event.id)).all()
        sent = [event.data["message"] for event, _ in rows if event.kind == "email-sent" and event.data.get("message")]
        recipients = {pk: to for pk, to in session.execute(select(Message.id, Message.recipient).where(Message.id.in_(sent)))} if sent else {}
        found = [
            Happening(
                at=event.at, kind=event.kind, lead=_label(lead), owner=lead.owner.name if lead is not None and lead.owner else "", channel=event.channel,
                text=event.key_points, data=dict(event.data or {}),
                to_lead=lead is not None and recipients.get(event.data.get("message") or 0) == lead.email,
            )
            for event, lead in rows
        ]
        last = max((event.id for event, _ in rows), default=after)
    return found, last


def _label(lead: Lead | None) -> str:
    """The lead as a person reads it: name and company; the address where the lead has no first name."""
    if lead is None:
        return ""
    who = f"{lead.first_name} {lead.last_name}".strip() if lead.first_name else lead.email
    return f"{who} ({lead.company})" if lead.company else who


def lead_outcomes(app: App, cast: dict[str, Persona]) -> tuple[LeadOutcome, ...]:
    outcomes = []
    tz = zone(app.settings.workspace.timezone)
    with app.sessions() as session:
        for lead in session.scalars(select(Lead).order_by(Lead.id)):
            enrollments = list(session.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id).order_by(Enrollment.id)))
            events = list(session.scalars(select(Event).where(Event.lead_id == lead.id).order_by(Event.at, Event.id)))
            sent = sorted(t for t in session.scalars(select(Message.sent_at).where(Message.lead_id == lead.id, Message.recipient == lead.email, Message.direction == "out", Message.status == "sent")) if t is not None)
            outcomes.append(
                LeadOutcome(
                    email=lead.email, name=f"{lead.first_name} {lead.last_name}".strip() if lead.first_name else lead.email, company=lead.company,
                    owner=lead.owner.name if lead.owner else "", sequences=tuple(e.sequence_name for e in enrollments), phases=tuple(e.phase for e in enrollments),
                    status=lead.status, emails=len(sent), behaviour=cast[lead.email].behaviour, story=_story(events, enrollments, sent, tz),
                )
            )
    return tuple(outcomes)


def _day(at: dt.datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.day} {local:%b}"


def _story(events: list[Event], enrollments: list[Enrollment], sent: list[dt.datetime], tz: ZoneInfo) -> str:
    """What happened to one lead, a few words per turn."""
    meetings = {event.data.get("inbound") for event in events if event.kind == "meeting"}
    turns = []
    for event in events:
        turn = _turn(event, sum(1 for t in sent if t <= event.at), event.data.get("inbound") in meetings, tz)
        if turn is not None:
            turns.append(turn)
    revisits = [e.next_action_at for e in enrollments if e.phase == "dormant" and e.next_action_at is not None]
    if revisits:
        turns.append(f"revisit {_day(revisits[-1], tz)}")
    if not turns:
        upcoming = sorted(e.next_action_at for e in enrollments if e.next_action_at is not None)
        turns.append(f"no answer yet; next step {_day(upcoming[0], tz)}" if upcoming else "no answer")
    return " → ".join(turns)


def _turn(event: Event, emails_before: int, meeting: bool, tz: ZoneInfo) -> str | None:
    when = _day(event.at, tz)
    after = f"after {emails_before} email{'s' if emails_before != 1 else ''}"
    if event.kind == "reply":
        return f"accepted a meeting {when}, {after}" if meeting else f"replied {when}, {after}"
    if event.kind == "auto-reply":
        until = event.data.get("until")
        return f"out of office until {_day(dt.datetime.combine(dt.date.fromisoformat(until), dt.time(12), tzinfo=tz), tz)}" if until else "auto-reply"
    if event.kind == "bounce":
        return f"bounced {when} ({event.data.get('status') or 'hard'}); suppressed"
    if event.kind == "unsubscribe":
        return f"asked to be removed {when}, {after}; suppressed"
    if event.kind == "owner-replied":
        return f"answered {when}"
    if event.kind == "outcome":
        return f"{event.data.get('outcome', 'outcome').replace('-', ' ')} {when}"
    if event.kind == "escalated":
        return f"answer overdue, manager told {when}" if event.data.get("reason") else f"escalated {when}"
    if event.kind in ("dormant", "revisit"):
        return f"{event.kind.replace('revisit', 'revisited')} {when}"
    if event.kind == "completed":
        return f"finished {when}"
    return None
