"""The cast: the leads the demo plays (who they are, what they do, in what words), what each of
them knows and has received as the story goes, and the working days they answer in."""

from __future__ import annotations

import datetime as dt
import enum
import random
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from outreach import crm
from outreach.clock import UTC

# A fixed start: the same seed tells the same story, weekends and holidays included. LocalMail
# dates each arrival by the demo's clock, so mail put in at a simulated moment is dated then.
START = dt.datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # Monday 2 March 2026, 08:00 in Bengaluru
DAYS = 60
BD = "bd-client-follow-up"


class Behaviour(enum.StrEnum):
    REPLY = "reply"
    OUT_OF_OFFICE = "out-of-office"  # an auto-reply to the first email, then a reply after the return date
    BOUNCE = "bounce"  # the address does not exist: the mail system returns a delivery report
    OPT_OUT = "opt-out"
    MEETING = "meeting"  # a reply that accepts a meeting invitation (iCalendar METHOD:REPLY)
    SILENT = "silent"


@dataclass(frozen=True)
class Recorded:
    """An outcome the owner records in the CRM (`outreach lead mark`) some days after answering the lead."""

    outcome: crm.Outcome
    note: str
    after_days: tuple[float, float]


@dataclass(frozen=True)
class Persona:
    """A lead the demo plays: the sequence it is enrolled in, what it does, after which email
    (1 = the first that reaches it), how many hours later, and in what words ({owner} is the
    owner's first name, {meeting} the meeting's day and time)."""

    email: str
    sequence: str
    behaviour: Behaviour = Behaviour.SILENT
    after_email: int = 1
    delay_hours: tuple[float, float] = (2.0, 30.0)
    text: str = ""
    records: Recorded | None = None


CAST = (
    Persona(
        "ananya.rao@acme.example", BD, Behaviour.REPLY, 1, (18.0, 30.0),
        "Hi {owner},\n\nThanks for reaching out, the timing is good: we are reviewing our dispatch tooling this quarter. "
        "Could you send me a short summary of the proposal, and a couple of slots for a call next week?\n\nBest,\nAnanya",
        Recorded(crm.Outcome.MEETING_BOOKED, "call with Ananya and her operations team", (0.5, 2.0)),
    ),
    Persona("vikram@sundaram.example.com", BD),
    Persona(
        "oliver.bennett@bennetthale.example", BD, Behaviour.REPLY, 2, (2.0, 6.0),
        "Hi {owner},\n\nApologies for the slow reply, it has been a busy fortnight. The proposal is with our MD; "
        "could we do thirty minutes on Thursday afternoon to go through the pricing?\n\nKind regards,\nOliver",
    ),
    Persona(
        "c.hughes@northwind.example", BD, Behaviour.OUT_OF_OFFICE, 1, (3.0, 20.0),
        "Hi {owner},\n\nBack from leave and catching up, thanks for your patience. Yes, we would like to see how this "
        "would work for our patient-booking team. Are you free early next week?\n\nCharlotte",
    ),
    Persona(
        "jonas.weber@weber-maschinenbau.example", BD, Behaviour.MEETING, 3, (20.0, 40.0),
        "Hallo {owner},\n\nsorry for the silence, the proposal went round our IT team first. {meeting} works for us: "
        "I have accepted your invitation for the walk-through.\n\nBeste Grüße\nJonas Weber",
        Recorded(crm.Outcome.PROPOSAL_SENT, "revised proposal after the walk-through", (3.0, 5.0)),
    ),
    Persona("einkauf@example.net", BD, Behaviour.BOUNCE),
    Persona(
        "emily.carter@example.com", BD, Behaviour.OPT_OUT, 2, (3.0, 9.0),
        "Please remove me from your list. We are not looking for new vendors this year.\n\nEmily Carter",
    ),
    Persona("marcus@globex.example", BD),
    Persona("sophie.nguyen@coastline.example", "customer-updates"),
    Persona(
        "weiling.tan@lionpoint.example", "support-check-in", Behaviour.REPLY, 1, (4.0, 26.0),
        "Hi {owner},\n\nAll good on our side, thanks for checking in. One small thing: could the monthly report "
        "also go to our finance team?\n\nWei Ling",
    ),
    Persona("arjun.kapoor@example.org", BD),
    Persona("dbrooks@example.com", BD),
)



@dataclass(frozen=True)
class Received:
    """An email that reached a lead."""

    at: dt.datetime
    sender: str
    sender_name: str
    subject: str
    message_id: str
    references: tuple[str, ...]
    text: str
    headers: str  # as received, for a delivery report to quote


@dataclass(frozen=True)
class Card:
    """Who a played lead is and who owns them: what the person knows of themselves."""

    email: str
    name: str
    company: str
    tz: ZoneInfo
    owner_first: str

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@dataclass
class Played:
    """A lead as the demo plays it: its persona, what reached it, and where it stands."""

    persona: Persona
    card: Card
    rng: random.Random
    received: list[Received] = field(default_factory=list)
    back_on: dt.date | None = None  # out of office until this day
    answered: bool = False


def weekday(tz: ZoneInfo, at: dt.datetime) -> dt.date:
    day = at.astimezone(tz).date()
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def working_time(at: dt.datetime, tz: ZoneInfo, rng: random.Random) -> dt.datetime:
    """People answer on working days between 8:00 and 19:00 their time; later than that, the next morning."""
    local = at.astimezone(tz)
    if local.weekday() < 5 and 8 <= local.hour < 19:
        return at
    day = local.date() + dt.timedelta(days=0 if local.hour < 8 else 1)
    day = weekday(tz, dt.datetime.combine(day, dt.time(12), tzinfo=tz))
    return (dt.datetime.combine(day, dt.time(8), tzinfo=tz) + dt.timedelta(minutes=rng.uniform(5, 100))).astimezone(UTC)
