"""`outreach demo`: sixty days of the real pipeline, played in well under a minute on one machine.

What runs is what runs in production: the scheduler's tick and relay, Dramatiq workers (an
in-process StubBroker with worker threads), SMTP into an in-process aiosmtpd, and the IMAP poller
reading the team's mailboxes from an in-process pymap (LocalMail). Two things are simulated.

- The clock: a FakeClock moved to whatever is due next (the scheduler's next wakeup, or the moment
  a person's email arrives), never more than a few hours at a time.
- The people. Leads read what reaches them (LocalMail's catch-all INBOX, where mail to outside
  addresses lands) and answer as people do, hours or days later and in their working day, with
  real emails put into the owner's INBOX: a reply, an out-of-office, a bounce report from the mail
  system, a request to be removed, a meeting acceptance, or nothing at all. Owners answer replies
  from their own mail client, which files a copy in Sent; the poller reads it for the response time.

Everything lands in one folder (var/demo unless told otherwise, wiped at the start): the SQLite
database, the maildirs, and the outreach.yaml that points the workspace's mailboxes at LocalMail.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import os
import random
import re
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any, Protocol, Self
from zoneinfo import ZoneInfo

import dramatiq
import yaml
from dramatiq.brokers.stub import StubBroker
from imapclient import IMAPClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from outreach import crm
from outreach.clock import UTC, FakeClock
from outreach.config import Settings, load_settings
from outreach.db.models import Enrollment, Event, Lead, Message
from outreach.errors import ConfigError, Location, Problem
from outreach.mail.subjects import reply_subject
from outreach.mail.localmail import CATCH_ALL, LocalMail
from outreach.poller import poll_all
from outreach.runner import next_wakeup, prepare, step
from outreach.sequences.calendar import zone
from outreach.service import App
from workers import actors

# A fixed start: the same seed tells the same story, weekends and holidays included. LocalMail
# dates each arrival by the demo's clock, so mail put in at a simulated moment is dated then.
START = dt.datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # Monday 2 March 2026, 08:00 in Bengaluru
DAYS = 60
LONGEST_STEP = dt.timedelta(hours=6)  # the clock never jumps further: the pollers look at least this often
SHORTEST_STEP = dt.timedelta(minutes=1)  # when something due did not move, the clock still does
MAX_ROUNDS = 20_000
PASSWORD_ENV = "OUTREACH_DEMO_PASSWORD"
BD = "bd-client-follow-up"
WORKER_THREADS = 2


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


# ---- what the demo tells -----------------------------------------------------------------------


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
class DemoResult:
    directory: Path
    database: Path
    maildir: Path
    start: dt.datetime
    end: dt.datetime
    finished: bool  # the clock reached the end
    rounds: int
    mailboxes: tuple[str, ...]
    leads: tuple[LeadOutcome, ...]
    report: crm.Report  # the KPIs and the counts behind them, as `outreach report` shows them

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    def lead(self, email: str) -> LeadOutcome:
        return next(outcome for outcome in self.leads if outcome.email == email)


@dataclass(frozen=True)
class Setup:
    """What the demo runs on, known once it started."""

    database: Path
    maildir: Path
    smtp: str
    imap: str
    timezone: str
    start: dt.datetime
    end: dt.datetime
    enrolled: dict[str, int]  # sequence -> leads


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


class Watcher(Protocol):
    """Who watches the demo run: told the set-up once, then what each round wrote."""

    def started(self, setup: Setup) -> None: ...

    def round(self, now: dt.datetime, happenings: list[Happening]) -> None: ...


# ---- running ------------------------------------------------------------------------------------


def run_demo(workspace: Path | None = None, *, seed: int = 7, days: int = DAYS, directory: Path | None = None, watcher: Watcher | None = None, start: dt.datetime = START) -> DemoResult:
    """Play `days` of the workspace's sequences for its sample leads (examples/leads.csv) from
    `start`, the same story for the same seed and start; what became of each lead, and the KPIs."""
    source = load_settings(workspace, {})  # the workspace file alone: the demo brings its own database, broker and mail
    if not source.workspace.mailboxes:
        raise ConfigError(Problem(Location(str(source.root / "outreach.yaml")), "the workspace has no mailboxes to send from; the demo needs the team's mailboxes"))
    folder = (directory or source.root / "var" / "demo").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    end = start + dt.timedelta(days=days)
    with _stage(source, folder, start) as stage:
        prepare(stage.app)
        cast = _enroll(stage.app, source.root / "examples" / "leads.csv", seed)
        if watcher is not None:
            watcher.started(_setup(stage, folder, cast, start, end))
        finished, rounds = _play(stage, _People(stage, cast, seed), end, watcher)
        leads = _outcomes(stage.app, cast)
        with stage.app.sessions() as session:
            kpis = crm.report(stage.app, session)
    return DemoResult(
        directory=folder, database=folder / "outreach.sqlite", maildir=folder / "mail",
        start=start, end=end, finished=finished, rounds=rounds, mailboxes=tuple(box.address for box in source.workspace.mailboxes), leads=leads, report=kpis,
    )


@dataclass
class _Stage:
    app: App
    clock: FakeClock
    mail: LocalMail
    broker: StubBroker
    worker: dramatiq.Worker
    password: str


@contextmanager
def _stage(source: Settings, folder: Path, start: dt.datetime) -> Iterator[_Stage]:
    """LocalMail, the App on a fake clock, the workers; stopped in the reverse order, whatever happens."""
    password = secrets.token_urlsafe(16)
    with ExitStack() as stack:
        stack.enter_context(_temp_dir_on_the_filesystem_of(folder))
        stack.enter_context(_environment(PASSWORD_ENV, password))
        clock = FakeClock(start)
        mail = LocalMail(folder / "mail", {box.address: password for box in source.workspace.mailboxes}, clock=clock).start()
        stack.callback(mail.stop)
        app = App(_demo_settings(source, folder, mail), clock, migrate=True)
        stack.callback(app.close)
        broker, worker = _start_workers(app)
        stack.callback(_stop_workers, broker, worker)
        yield _Stage(app, clock, mail, broker, worker, password)


@contextmanager
def _temp_dir_on_the_filesystem_of(folder: Path) -> Iterator[None]:
    """pymap renames its index files from the temp dir into the maildirs, so both must share a
    filesystem (not so where /tmp is a tmpfs): then the temp dir moves into the demo's folder."""
    if Path(tempfile.gettempdir()).stat().st_dev == folder.stat().st_dev:
        yield
        return
    before = tempfile.tempdir
    inside = folder / "tmp"
    inside.mkdir(exist_ok=True)
    tempfile.tempdir = str(inside)
    try:
        yield
    finally:
        tempfile.tempdir = before


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Mailbox passwords come from the environment, as in production; the demo's lives only for the run."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _demo_settings(source: Settings, folder: Path, mail: LocalMail) -> Settings:
    """The workspace's own settings with its mailboxes on LocalMail and its data in `folder`, written
    there as outreach.yaml so that `outreach --workspace` can look at the outcome afterwards."""
    config = source.workspace.model_dump(mode="json", exclude_none=True)
    config.update(database_url=f"sqlite:///{folder / 'outreach.sqlite'}", broker_url="stub://", sequences=str(source.sequences_dir), templates=str(source.templates_dir))
    for box in config["mailboxes"]:
        box["smtp"] = {"host": mail.host, "port": mail.smtp_port, "security": "none"}
        box["imap"] = {"host": mail.host, "port": mail.imap_port, "security": "none", "username": box["address"], "password_env": PASSWORD_ENV, "save_sent": True}
        box["min_interval"], box["jitter"] = 1.0, 2.0  # seconds of simulated time: the spacing shows, and costs no waiting
    header = "# Written by `outreach demo`: the workspace's settings, its mailboxes pointed at the demo's LocalMail (stopped now).\n"
    (folder / "outreach.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return load_settings(folder, {"OUTREACH_SECRET_KEY": secrets.token_urlsafe(32)})


def _start_workers(app: App) -> tuple[StubBroker, dramatiq.Worker]:
    broker = StubBroker()
    actors.bind(broker)
    actors.configure(app)
    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS, worker_timeout=50)
    worker.start()
    return broker, worker


def _stop_workers(broker: StubBroker, worker: dramatiq.Worker) -> None:
    """Stop the threads, and give the actors back to the process's own broker rather than leave them on a closed one."""
    worker.stop()
    broker.flush_all()
    broker.close()
    actors.configure(None)
    actors.bind(dramatiq.get_broker())


def _enroll(app: App, leads_csv: Path, seed: int) -> dict[str, Persona]:
    """Import the sample leads and enroll each in its persona's sequence (a lead the cast does not
    know stays silent in the BD cadence); the persona of each lead."""
    app.import_leads(leads_csv)
    with app.sessions() as session:
        emails = list(session.scalars(select(Lead.email).order_by(Lead.id)))
    known = {persona.email: persona for persona in CAST}
    cast = {email: known.get(email, Persona(email, BD)) for email in emails}
    groups: dict[str, list[str]] = {}
    for persona in cast.values():
        groups.setdefault(persona.sequence, []).append(persona.email)
    for index, (sequence, members) in enumerate(sorted(groups.items())):
        app.enroll(sequence, members, seed=seed * 1000 + index)
    return cast


def _setup(stage: _Stage, folder: Path, cast: dict[str, Persona], start: dt.datetime, end: dt.datetime) -> Setup:
    mail = stage.mail
    return Setup(
        database=folder / "outreach.sqlite", maildir=mail.root, smtp=f"{mail.host}:{mail.smtp_port}", imap=f"{mail.host}:{mail.imap_port}",
        timezone=stage.app.settings.workspace.timezone, start=start, end=end, enrolled=dict(Counter(p.sequence for p in cast.values())),
    )


def _play(stage: _Stage, people: _People, end: dt.datetime, watcher: Watcher | None) -> tuple[bool, int]:
    """The loop: people's mail in, a scheduler round, the workers drained, every mailbox polled, the
    people read what reached them; then the clock moves to whatever is due next."""
    app, clock = stage.app, stage.clock
    last_event = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        now = clock.now()
        people.deliver_due(now)
        handed = step(app, actors.enqueue, now=now).enqueued
        if handed:
            stage.broker.join(actors.send_message.queue_name, timeout=120_000)
            stage.worker.join()
        poll_all(app)
        if handed:
            people.read_mail(now)
        happenings, last_event = _happenings(app, last_event)
        if watcher is not None:
            watcher.round(now, happenings)
        if now >= end:
            return True, rounds
        clock.set(_next_time(app, people, now, end))
    return False, MAX_ROUNDS


def _next_time(app: App, people: _People, now: dt.datetime, end: dt.datetime) -> dt.datetime:
    due = [t for t in (next_wakeup(app), people.next_arrival()) if t is not None]
    upcoming = min([*due, now + LONGEST_STEP, end])
    return upcoming if upcoming > now else min(now + SHORTEST_STEP, end)


# ---- the people ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Received:
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
class _Card:
    email: str
    name: str
    company: str
    tz: ZoneInfo
    owner_first: str

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@dataclass
class _Lead:
    persona: Persona
    card: _Card
    rng: random.Random
    received: list[_Received] = field(default_factory=list)
    back_on: dt.date | None = None  # out of office until this day
    answered: bool = False


@dataclass(order=True)
class _Act:
    """Something a person does at a moment: mail that arrives, or a line an owner records in the CRM."""

    at: dt.datetime
    order: int
    do: Callable[[], object] = field(compare=False)


class _People:
    """The leads, and the owners answering them, as the demo plays them. Leads see only mail: what
    reaches their address; what they write back reaches the owner's INBOX."""

    def __init__(self, stage: _Stage, cast: dict[str, Persona], seed: int) -> None:
        self.stage = stage
        cards = _cards(stage.app)
        self.leads = {email: _Lead(persona, cards[email], random.Random(f"{seed}:{email}")) for email, persona in cast.items()}
        self.mailboxes = {box.address for box in stage.app.settings.workspace.mailboxes}
        self.pending: list[_Act] = []
        self._read = 0
        self._order = itertools.count()  # acts due at the same moment happen in the order they were planned

    def next_arrival(self) -> dt.datetime | None:
        return min(self.pending).at if self.pending else None

    def deliver_due(self, now: dt.datetime) -> None:
        due = sorted(act for act in self.pending if act.at <= now)
        self.pending = [act for act in self.pending if act.at > now]
        for act in due:
            act.do()

    def read_mail(self, now: dt.datetime) -> None:
        """New mail in the catch-all INBOX: each lead reads what reached them and reacts (or not)."""
        inbox = self.stage.mail.messages(CATCH_ALL)
        for raw in inbox[self._read :]:
            recipient, mail = _parse_received(raw, now)
            lead = self.leads.get(recipient)
            if lead is not None:
                lead.received.append(mail)
                self._react(lead, mail, now)
        self._read = len(inbox)

    def _react(self, lead: _Lead, mail: _Received, now: dt.datetime) -> None:
        """Machines answer within a minute or two (the mail system's bounce, the out-of-office);
        people later, once."""
        if lead.answered or mail.sender not in self.mailboxes:
            return
        behaviour = lead.persona.behaviour
        soon = now + dt.timedelta(seconds=lead.rng.uniform(20, 120))
        if behaviour is Behaviour.BOUNCE:
            self._mail(soon, mail.sender, _bounce_report(lead, mail, soon))
            lead.answered = True
        elif behaviour is Behaviour.OUT_OF_OFFICE and lead.back_on is None:
            lead.back_on = _weekday(lead.card.tz, now + dt.timedelta(days=lead.rng.randint(8, 11)))
            self._mail(soon, mail.sender, _out_of_office(lead, mail, soon))
        elif _answers(lead, now):
            self._answer(lead, mail, now)

    def _answer(self, lead: _Lead, mail: _Received, now: dt.datetime) -> None:
        """The lead writes back in their working day; a person's reply gets the owner's answer a little
        later in the owner's, and an outcome the owner records a day or two on."""
        at = _working_time(now + dt.timedelta(hours=lead.rng.uniform(*lead.persona.delay_hours)), lead.card.tz, lead.rng)
        reply = _answer(lead, mail, at)
        self._mail(at, mail.sender, reply)
        lead.answered = True
        if lead.persona.behaviour is Behaviour.OPT_OUT:
            return
        box = self.stage.app.mailbox_config(mail.sender)
        owner_zone = zone(box.timezone) if box else lead.card.tz
        answered = _working_time(at + dt.timedelta(hours=lead.rng.uniform(0.5, 3.5)), owner_zone, lead.rng)
        self._mail(answered, lead.card.email, _owners_answer(lead, mail, reply, answered), filed_by=mail.sender)
        later = lead.persona.records
        if later is not None:
            recorded = _working_time(answered + dt.timedelta(days=lead.rng.uniform(*later.after_days)), owner_zone, lead.rng)
            self._schedule(recorded, lambda: crm.mark(self.stage.app, lead.card.email, later.outcome, later.note))

    def _mail(self, at: dt.datetime, to: str, raw: bytes, *, filed_by: str | None = None) -> None:
        """Mail that reaches `to`'s INBOX at `at`; sent by one of our owners (`filed_by`), it is also filed in their Sent folder."""

        def arrive() -> None:
            self.stage.mail.deliver(raw, [to])
            if filed_by is not None:
                self._file_in_sent(filed_by, raw, at)

        self._schedule(at, arrive)

    def _schedule(self, at: dt.datetime, do: Callable[[], object]) -> None:
        self.pending.append(_Act(at, next(self._order), do))

    def _file_in_sent(self, mailbox: str, raw: bytes, at: dt.datetime) -> None:
        """The owner's mail client files what it sent in Sent (IMAP APPEND), dated when it was sent."""
        client = IMAPClient(self.stage.mail.host, port=self.stage.mail.imap_port, ssl=False, timeout=10)
        try:
            client.login(mailbox, self.stage.password)
            client.append("Sent", raw, flags=[b"\\Seen"], msg_time=at)
        finally:
            client.logout()


def _answers(lead: _Lead, now: dt.datetime) -> bool:
    """Is the email just read the one the lead answers: the n-th, or the first after their leave?"""
    persona = lead.persona
    if persona.behaviour is Behaviour.OUT_OF_OFFICE:
        return lead.back_on is not None and now.astimezone(lead.card.tz).date() >= lead.back_on
    return persona.behaviour in (Behaviour.REPLY, Behaviour.OPT_OUT, Behaviour.MEETING) and len(lead.received) == persona.after_email


def _cards(app: App) -> dict[str, _Card]:
    """Who each lead is and who owns them: what the person the demo plays knows of themselves."""
    cards = {}
    with app.sessions() as session:
        for lead in session.scalars(select(Lead)):
            name = lead.display_name
            owner_first = lead.owner.name.split()[0] if lead.owner else "there"
            cards[lead.email] = _Card(lead.email, name, lead.company, zone(lead.timezone or app.settings.workspace.timezone), owner_first)
    return cards


def _parse_received(raw: bytes, now: dt.datetime) -> tuple[str, _Received]:
    """The recipient (LocalMail's X-Original-To) and what they see of one email."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    name, sender = parseaddr(str(msg["From"]))
    body = msg.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n", 1)[1].decode("utf-8", "replace").replace("\r\n", "\n")
    received = _Received(
        at=now, sender=sender.lower(), sender_name=name, subject=str(msg["Subject"] or ""), message_id=str(msg["Message-ID"] or ""),
        references=tuple(str(msg["References"] or "").split()), text=text, headers=headers,
    )
    return str(msg["X-Original-To"]).lower(), received


def _weekday(tz: ZoneInfo, at: dt.datetime) -> dt.date:
    day = at.astimezone(tz).date()
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _working_time(at: dt.datetime, tz: ZoneInfo, rng: random.Random) -> dt.datetime:
    """People answer on working days between 8:00 and 19:00 their time; later than that, the next morning."""
    local = at.astimezone(tz)
    if local.weekday() < 5 and 8 <= local.hour < 19:
        return at
    day = local.date() + dt.timedelta(days=0 if local.hour < 8 else 1)
    day = _weekday(tz, dt.datetime.combine(day, dt.time(12), tzinfo=tz))
    return (dt.datetime.combine(day, dt.time(8), tzinfo=tz) + dt.timedelta(minutes=rng.uniform(5, 100))).astimezone(UTC)


# ---- the emails people write ---------------------------------------------------------------------


def _message_id(rng: random.Random, domain: str) -> str:
    return f"<{rng.getrandbits(64):016x}.{rng.getrandbits(32):08x}@{domain}>"


def _quoted(mail: _Received) -> str:
    lines = mail.text.strip().splitlines()[:14]
    return f"On {format_datetime(mail.at)}, {mail.sender_name} <{mail.sender}> wrote:\n" + "\n".join(f"> {line}".rstrip() for line in lines)


def _threaded(lead: _Lead, mail: _Received, at: dt.datetime, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((lead.card.name, lead.card.email))
    msg["To"] = formataddr((mail.sender_name, mail.sender))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at.astimezone(lead.card.tz))
    msg["Message-ID"] = _message_id(lead.rng, lead.card.domain)
    msg["In-Reply-To"] = mail.message_id
    msg["References"] = " ".join((*mail.references, mail.message_id))
    msg.set_content(body)
    return msg


def _answer(lead: _Lead, mail: _Received, at: dt.datetime) -> bytes:
    """A reply in the thread, with the usual quote of what it answers; a meeting acceptance carries its calendar part."""
    meeting = _meeting_time(lead, at)
    text = lead.persona.text.format(owner=lead.card.owner_first, meeting=f"{meeting:%A} at {meeting:%H:%M}")
    msg = _threaded(lead, mail, at, reply_subject(mail.subject), f"{text}\n\n{_quoted(mail)}\n")
    if lead.persona.behaviour is Behaviour.MEETING:
        msg.add_alternative(_calendar_reply(lead, mail, at, meeting), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes(policy=policy.SMTP)


def _meeting_time(lead: _Lead, at: dt.datetime) -> dt.datetime:
    """Two working days on, at 10:00 the lead's time."""
    day = _weekday(lead.card.tz, at + dt.timedelta(days=2))
    return dt.datetime.combine(day, dt.time(10), tzinfo=lead.card.tz)


def _calendar_reply(lead: _Lead, mail: _Received, at: dt.datetime, meeting: dt.datetime) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR", "METHOD:REPLY", "PRODID:Microsoft Exchange Server 2016", "VERSION:2.0", "BEGIN:VEVENT",
        f'ATTENDEE;PARTSTAT=ACCEPTED;CN="{lead.card.name}":mailto:{lead.card.email}',
        f'ORGANIZER;CN="{mail.sender_name}":mailto:{mail.sender}',
        f"UID:{lead.rng.getrandbits(64):016x}@appneural", f"DTSTAMP:{at.astimezone(UTC):{stamp}}",
        f"DTSTART:{meeting.astimezone(UTC):{stamp}}", f"DTEND:{(meeting + dt.timedelta(minutes=45)).astimezone(UTC):{stamp}}",
        f"SUMMARY:Accepted: {lead.card.company or lead.card.name} and APPNEURAL: proposal walk-through", "SEQUENCE:0", "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def _out_of_office(lead: _Lead, mail: _Received, at: dt.datetime) -> bytes:
    assert lead.back_on is not None
    back = lead.back_on
    body = (
        f"Thank you for your email. I am out of the office until {back:%A} {back.day} {back:%B} {back:%Y} with limited access to email.\n\n"
        f"For anything urgent, please contact our office on the main number.\n\n{lead.card.name}\n{lead.card.company}\n"
    )
    msg = _threaded(lead, mail, at, f"Automatic reply: {mail.subject}", body)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    return msg.as_bytes(policy=policy.SMTP)


def _owners_answer(lead: _Lead, ours: _Received, raw_reply: bytes, at: dt.datetime) -> bytes:
    """What the owner writes back from their own mail client: short, in the thread of the lead's reply."""
    theirs = message_from_bytes(raw_reply, policy=policy.default)
    msg = EmailMessage()
    msg["From"] = formataddr((ours.sender_name, ours.sender))
    msg["To"] = formataddr((lead.card.name, lead.card.email))
    msg["Subject"] = reply_subject(str(theirs["Subject"]))
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = _message_id(lead.rng, ours.sender.rpartition("@")[2])
    msg["In-Reply-To"] = str(theirs["Message-ID"])
    msg["References"] = f"{theirs['References']} {theirs['Message-ID']}"
    first = lead.card.name.split()[0]
    msg.set_content(f"Hi {first},\n\nThank you for coming back to me. I'll send you the details today.\n\nBest regards,\n{ours.sender_name}\n")
    return msg.as_bytes(policy=policy.SMTP)


def _bounce_report(lead: _Lead, mail: _Received, at: dt.datetime) -> bytes:
    """What the sending mailbox's mail system returns when the lead's server refuses the address (RFC 3464)."""
    rcpt = lead.card.email
    ours = f"mail.{mail.sender.rpartition('@')[2]}"
    theirs = f"mx.{lead.card.domain}"
    boundary = f"{lead.rng.getrandbits(48):012X}.{int(at.timestamp())}/{ours}"
    reply = f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@{ours}>
To: {mail.sender}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: {_message_id(lead.rng, ours)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {ours}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{rcpt}>: host {theirs}[192.0.2.25] said: {reply} (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {ours}
Arrival-Date: {format_datetime(mail.at)}

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; {theirs}
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{mail.headers}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


# ---- what happened -------------------------------------------------------------------------------


def _happenings(app: App, after: int) -> tuple[list[Happening], int]:
    """The CRM record lines written since event `after`, in the order they happened."""
    with app.sessions() as session:
        rows = session.execute(select(Event, Lead).outerjoin(Lead, Event.lead_id == Lead.id).where(Event.id > after).order_by(Event.at, Event.id)).all()
        sent = [event.data["message"] for event, _ in rows if event.kind == "email-sent" and event.data.get("message")]
        recipients = {pk: to for pk, to in session.execute(select(Message.id, Message.recipient).where(Message.id.in_(sent)))} if sent else {}
        found = [
            Happening(
                at=event.at, kind=event.kind, lead=_label(lead), owner=lead.owner.name if lead is not None and lead.owner else "", channel=event.channel,
                text=event.key_points, data=dict(event.data or {}),
                to_lead=lead is not None and recipients.get(event.data.get("message")) == lead.email,
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


def _outcomes(app: App, cast: dict[str, Persona]) -> tuple[LeadOutcome, ...]:
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


# ---- showing it ------------------------------------------------------------------------------------

_REVISIT = re.compile(r"revisit (\d{4}-\d{2}-\d{2})")
_NOTABLE = {
    "reply": "reply",
    "meeting": "meeting",
    "auto-reply": "out of office",
    "resumed": "resumed",
    "bounce": "bounce",
    "unsubscribe": "opt-out",
    "send-cancelled": "cancelled",
    "owner-replied": "answered",
    "task-opened": "task",
    "outcome": "recorded",
    "escalated": "escalated",
    "dormant": "dormant",
    "revisit": "revisit",
    "completed": "finished",
}


class ConsoleWatcher:
    """The demo as it runs, for a person: a bar of simulated days, and per day the emails sent
    (counted by step) with the notable turns under it: answers, bounces, escalations ..."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("[dim]simulating[/] {task.description}"), BarColumn(), TextColumn("day {task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn(), console=console, transient=True)
        self.tz = ZoneInfo("UTC")
        self.start = START
        self._task = self.progress.add_task("", total=DAYS)
        self._day: dt.date | None = None
        self._buffer: list[Happening] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self.progress.stop()

    def started(self, setup: Setup) -> None:
        self.tz, self.start = zone(setup.timezone), setup.start
        enrolled = ", ".join(f"{count} in {name}" for name, count in sorted(setup.enrolled.items(), key=lambda item: -item[1]))
        self.console.print(f"[bold]outreach demo[/]: {(setup.end - setup.start).days} days of the real pipeline on a fast clock", highlight=False)
        for line in (
            f"  mail      LocalMail in this process: SMTP {setup.smtp}, IMAP {setup.imap}, maildirs in {setup.maildir}",
            f"  database  {setup.database}",
            f"  workers   Dramatiq, in-process broker, {WORKER_THREADS} threads; the IMAP poller reads every mailbox each round",
            f"  leads     {sum(setup.enrolled.values())} from examples/leads.csv: {enrolled}",
            f"  clock     {setup.start.astimezone(self.tz):%a %d %b %Y %H:%M} to {setup.end.astimezone(self.tz):%a %d %b %Y}; times below in {setup.timezone}",
            "",
        ):
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)
        self.progress.update(self._task, total=(setup.end - setup.start) / dt.timedelta(days=1))
        self.progress.start()

    def round(self, now: dt.datetime, happenings: list[Happening]) -> None:
        today = now.astimezone(self.tz).date()
        if self._day is not None and today != self._day:
            self._flush()
        self._day = today
        self._buffer.extend(happenings)
        self.progress.update(self._task, completed=(now - self.start) / dt.timedelta(days=1), description=f"{now.astimezone(self.tz):%a %d %b}")

    def _flush(self) -> None:
        by_day: dict[dt.date, list[Happening]] = {}
        for happening in self._buffer:
            by_day.setdefault(happening.at.astimezone(self.tz).date(), []).append(happening)
        self._buffer = []
        for day, happenings in sorted(by_day.items()):
            self._print_day(day, happenings)

    def _print_day(self, day: dt.date, happenings: list[Happening]) -> None:
        steps = Counter(h.data.get("step", "").split("@")[0] for h in happenings if h.kind == "email-sent" and h.to_lead)
        notable = [h for h in happenings if h.kind in _NOTABLE]
        if not steps and not notable:
            return
        count = sum(steps.values())
        sent = f"✉ {count} email{'s' if count != 1 else ''}: " + ", ".join(f"{step} ×{n}" if n > 1 else step for step, n in steps.most_common()) if count else ""
        self.console.print(f"[bold]{day:%a %d %b}[/]  {sent}", highlight=False)
        drafted = {h.lead for h in happenings if h.kind == "draft-saved"}
        for happening in notable:
            line = f"  {happening.at.astimezone(self.tz):%H:%M}  {_NOTABLE[happening.kind]:<13} {happening.lead}: {_detail(happening, happening.lead in drafted)}"
            self.console.print(line, markup=False, highlight=False, no_wrap=True, overflow="ellipsis")


def _detail(happening: Happening, drafted: bool) -> str:
    """One notable turn in a few words: what a manager wants to know of it."""
    data, kind = happening.data, happening.kind
    text = " ".join(happening.text.split())
    if kind == "reply":
        return f"“{text[:100]}{'…' if len(text) > 100 else ''}”"
    if kind == "meeting":
        return "accepted the meeting invitation (calendar reply)"
    if kind == "auto-reply":
        return f"away until {dt.date.fromisoformat(data['until']):%a %d %b}; sequence paused" if data.get("until") else "auto-reply; sequence paused"
    if kind == "resumed":
        return "the pause ended; the sequence goes on"
    if kind == "bounce":
        status = data.get("status") or ""
        return f"hard bounce {status} from the mail system; address suppressed" if data.get("hard") else f"soft bounce {status}; will be retried"
    if kind == "unsubscribe":
        return "asked to be removed; address suppressed, sequence stopped"
    if kind == "owner-replied" and data.get("response_seconds") is not None:
        return f"{happening.owner} answered after {data['response_seconds'] / 3600:.1f} h"
    if kind == "task-opened":
        return f"{happening.channel} task for {happening.owner}: {text}"
    if kind == "outcome":
        return f"{happening.owner} recorded {text}"
    if kind == "escalated" and drafted:
        return f"{text}; a personal note waits in the manager's Drafts"
    if kind == "dormant" and (revisit := _REVISIT.search(text)):
        return f"no answer; parked until the revisit on {dt.date.fromisoformat(revisit.group(1)):%a %d %b}"
    return text


def print_summary(console: Console, result: DemoResult) -> None:
    """The per-lead table, the KPIs, where to look, and how to run it for real."""
    _print_leads(console, result)
    _print_kpis(console, result.report)
    first = result.leads[0].email if result.leads else "EMAIL"
    mailbox = result.mailboxes[0] if result.mailboxes else ""
    url = result.database_url
    console.print("\n[bold]Look around[/] (the demo's mail servers have stopped; the files stay until the next run)", highlight=False)
    for line in (
        f"  database   {result.database}",
        f"             OUTREACH_DATABASE_URL={url} outreach status",
        f"             OUTREACH_DATABASE_URL={url} outreach lead show {first}",
        f"             OUTREACH_DATABASE_URL={url} outreach report",
        f"  mail       {result.maildir}: a maildir per mailbox, e.g. {result.maildir / mailbox / '.Sent'} (new/, cur/);",
        f"             what reached the leads is in {result.maildir / CATCH_ALL}",
        "",
        "This was the real pipeline on a fast clock. With your own outreach.yaml (your mail servers, your team,",
        "PostgreSQL), `outreach run` does the same in real time: scheduler, sending workers and IMAP poller.",
    ):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _print_leads(console: Console, result: DemoResult) -> None:
    table = Table(title=f"After {(result.end - result.start).days} days", title_justify="left", title_style="bold")
    table.add_column("lead", no_wrap=True)
    table.add_column("company", no_wrap=True, max_width=18, overflow="ellipsis")
    table.add_column("owner", no_wrap=True)
    table.add_column("sequence", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("emails", justify="right")
    table.add_column("what happened", ratio=1)
    for lead in result.leads:
        cells = (lead.name, lead.company, lead.owner.split()[0] if lead.owner else "", "\n→ ".join(dict.fromkeys(lead.sequences)), lead.status, str(lead.emails), lead.story)
        table.add_row(*(Text(cell) for cell in cells))  # lead data is text, never markup
    console.print()
    console.print(table)


def _print_kpis(console: Console, report: crm.Report) -> None:
    console.print("\n[bold]KPIs[/] (as `outreach report` shows them)")
    for kpi in report.kpis:
        value = kpi.shown(kpi.value)
        shown = "n/a" if value is None else f"{value:.1f} {kpi.shown_unit}"
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "·"}[kpi.met]
        target = f"target {kpi.target_text}" if kpi.target_text else "no target"
        console.print(f"  {mark} {kpi.name:<22} {shown:>8}  {target:<14} [dim]{kpi.basis}[/]", highlight=False)
    console.print("  " + " · ".join(f"{name} {count}" for name, count in report.counts.items()), highlight=False)
