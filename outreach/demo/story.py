"""The demo's story: the stage it plays on (LocalMail, the App on a fake clock, the sending
workers it is given) and the loop that plays it, round by round, to the end.

Each round: the people's mail arrives, a scheduler round runs, the workers send what it handed
over, every mailbox is polled, the leads read what reached them; then the clock moves to
whatever is due next (the scheduler's next wakeup, or the moment a person's email arrives),
never more than a few hours at a time.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from sqlalchemy import select

from outreach import crm
from outreach.clock import FakeClock
from outreach.config import Settings, load_settings
from outreach.db.models import Lead
from outreach.demo.cast import BD, CAST, DAYS, START, Persona
from outreach.demo.localmail import LocalMail
from outreach.demo.outcomes import Happening, LeadOutcome, happened_since, lead_outcomes
from outreach.demo.people import People
from outreach.errors import ConfigError, Location, Problem
from outreach.poller import poll_all
from outreach.runner import next_wakeup, prepare, step
from outreach.service import App

LONGEST_STEP = dt.timedelta(hours=6)  # the clock never jumps further: the pollers look at least this often
SHORTEST_STEP = dt.timedelta(minutes=1)  # when something due did not move, the clock still does
MAX_ROUNDS = 20_000
PASSWORD_ENV = "OUTREACH_DEMO_PASSWORD"
WORKER_THREADS = 2


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


class Watcher(Protocol):
    """Who watches the demo run: told the set-up once, then what each round wrote."""

    def started(self, setup: Setup) -> None: ...

    def round(self, now: dt.datetime, happenings: list[Happening]) -> None: ...


class Senders(Protocol):
    """The sending workers, in this process, for the demo's application."""

    def enqueue(self, message_ids: list[int]) -> object:
        """Hand a batch of due messages over (the scheduler's relay calls it)."""

    def drain(self) -> None:
        """Until every message handed over is done with."""

    def stop(self) -> None: ...


StartSenders = Callable[[App, int], Senders]  # the application and the number of worker threads


def run_demo(
    workspace: Path | None = None, *, senders: StartSenders, seed: int = 7, days: int = DAYS, directory: Path | None = None,
    watcher: Watcher | None = None, start: dt.datetime = START,
) -> DemoResult:
    """Play `days` of the workspace's sequences for its sample leads (examples/leads.csv) from
    `start`, the same story for the same seed and start; what became of each lead, and the KPIs.
    `senders` starts the sending workers for the demo's application (the caller knows them)."""
    source = load_settings(workspace, {})  # the workspace file alone: the demo brings its own database, broker and mail
    if not source.workspace.mailboxes:
        raise ConfigError(Problem(Location(str(source.root / "outreach.yaml")), "the workspace has no mailboxes to send from; the demo needs the team's mailboxes"))
    folder = (directory or source.root / "var" / "demo").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    end = start + dt.timedelta(days=days)
    with _stage(source, folder, start, senders) as stage:
        prepare(stage.app)
        cast = _enroll(stage.app, source.root / "examples" / "leads.csv", seed)
        if watcher is not None:
            watcher.started(_setup(stage, folder, cast, start, end))
        finished, rounds = _play(stage, People(stage.app, stage.mail, stage.password, cast, seed), end, watcher)
        leads = lead_outcomes(stage.app, cast)
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
    senders: Senders
    password: str


@contextmanager
def _stage(source: Settings, folder: Path, start: dt.datetime, senders: StartSenders) -> Iterator[_Stage]:
    """LocalMail, the App on a fake clock, the workers; stopped in the reverse order, whatever happens."""
    password = secrets.token_urlsafe(16)
    with ExitStack() as stack:
        clock = FakeClock(start)
        mail = LocalMail(folder / "mail", {box.address: password for box in source.workspace.mailboxes}, clock=clock).start()
        stack.callback(mail.stop)
        app = App(_demo_settings(source, folder, mail, password), clock, migrate=True)
        stack.callback(app.close)
        sending = senders(app, WORKER_THREADS)
        stack.callback(sending.stop)
        yield _Stage(app, clock, mail, sending, password)


def _demo_settings(source: Settings, folder: Path, mail: LocalMail, password: str) -> Settings:
    """The workspace's own settings with its mailboxes on LocalMail and its data in `folder`, written
    there as outreach.yaml so that `outreach --workspace` can look at the outcome afterwards. The
    mailboxes' password is in the settings' environment, as in production, for this run only."""
    config = source.workspace.model_dump(mode="json", exclude_none=True)
    config.update(database_url=f"sqlite:///{folder / 'outreach.sqlite'}", broker_url="stub://", sequences=str(source.sequences_dir), templates=str(source.templates_dir))
    for box in config["mailboxes"]:
        box["smtp"] = {"host": mail.host, "port": mail.smtp_port, "security": "none"}
        box["imap"] = {"host": mail.host, "port": mail.imap_port, "security": "none", "username": box["address"], "password_env": PASSWORD_ENV, "save_sent": True}
        box["min_interval"], box["jitter"] = 1.0, 2.0  # seconds of simulated time: the spacing shows, and costs no waiting
    header = "# Written by `outreach demo`: the workspace's settings, its mailboxes pointed at the demo's LocalMail (stopped now).\n"
    (folder / "outreach.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return load_settings(folder, {"OUTREACH_SECRET_KEY": secrets.token_urlsafe(32), PASSWORD_ENV: password})


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


def _play(stage: _Stage, people: People, end: dt.datetime, watcher: Watcher | None) -> tuple[bool, int]:
    """The loop: people's mail in, a scheduler round, the workers drained, every mailbox polled, the
    people read what reached them; then the clock moves to whatever is due next."""
    app, clock = stage.app, stage.clock
    last_event = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        now = clock.now()
        people.deliver_due(now)
        handed = step(app, stage.senders.enqueue, now=now).enqueued
        if handed:
            stage.senders.drain()
        poll_all(app)
        if handed:
            people.read_mail(now)
        happenings, last_event = happened_since(app, last_event)
        if watcher is not None:
            watcher.round(now, happenings)
        if now >= end:
            return True, rounds
        clock.set(_next_time(app, people, now, end))
    return False, MAX_ROUNDS


def _next_time(app: App, people: People, now: dt.datetime, end: dt.datetime) -> dt.datetime:
    due = [t for t in (next_wakeup(app), people.next_arrival()) if t is not None]
    upcoming = min([*due, now + LONGEST_STEP, end])
    return upcoming if upcoming > now else min(now + SHORTEST_STEP, end)
