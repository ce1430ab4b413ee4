"""The CRM commands through the CLI, on SQLite and PostgreSQL: tasks, a lead's record, outcomes,
the KPI report, retention and erasure. State is built through the real App: leads imported and
enrolled, the scheduler ticking under a fake clock, answers recorded the way the poller records them."""

from __future__ import annotations

import csv
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from outreach import crm
from outreach.clock import FakeClock, ensure_utc
from outreach.config import load_settings
from outreach.crm import Age, parse_age
from outreach.db.models import (
    Enrollment,
    Event,
    InboundMail,
    Lead,
    Message,
    Suppression,
    Task,
    Thread,
)
from outreach.db.session import transaction
from outreach.delivery import wake
from outreach.errors import InputError
from outreach.mail import inbound as inb
from outreach.poller import Match, act
from outreach.scheduler import SCHEDULED, tick
from outreach.service import App, record
from tests.cli_helpers import run, snapshot

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 08:30 in India
BD = "bd-client-follow-up"
ANANYA = "ananya.rao@acme.example"  # Priya's leads, in India
VIKRAM = "vikram@sundaram.example.com"
ARJUN = "arjun.kapoor@example.org"
MARCUS = "marcus@globex.example"  # Priya's lead in California
OLIVER = "oliver.bennett@bennetthale.example"  # Rahul's lead in London


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One fake clock for the test's App and for every CLI run (which would otherwise read the system's)."""
    fake = FakeClock(START)
    monkeypatch.setattr("outreach.service.SystemClock", lambda: fake)
    return fake


@pytest.fixture
def db(workspace: Path, database_url: str) -> str:
    assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    return database_url


@pytest.fixture
def app(workspace: Path, db: str, clock: FakeClock) -> Iterator[App]:
    """The shipped leads imported; the BD sequence's call waits until it is done or skipped."""
    path = workspace / "sequences" / f"{BD}.yaml"
    path.write_text(path.read_text().replace("      due: 1 business day\n", "      due: 1 business day\n      wait: true\n"))
    application = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": db}), clock, migrate=False)
    application.import_leads(workspace / "examples" / "leads.csv")
    yield application
    application.close()


def advance(app: App, clock: FakeClock, until: dt.datetime) -> None:
    """Play the scheduler forward to `until`, one tick per due time; each email planned goes out
    at once (no SMTP: the outbox row is marked sent), as the workers would send it."""
    for _ in range(500):
        with app.sessions() as session:
            due = session.scalar(select(func.min(Enrollment.next_action_at)).where(Enrollment.phase.in_(SCHEDULED)))
        if due is None or ensure_utc(due) > until:
            break
        clock.set(max(ensure_utc(due), clock.now()))
        planned = tick(app).messages
        if planned:
            with transaction(app.sessions) as session:
                for message in session.scalars(select(Message).where(Message.id.in_(planned), Message.kind == "sequence")):
                    message.status, message.sent_at = "sent", clock.now()
                    session.flush()
                    wake(session, message.enrollment_id, clock.now())
    clock.set(until)


def deliver_all(app: App) -> None:
    """As if the workers had sent every planned message at its planned time."""
    with transaction(app.sessions) as session:
        for message in session.scalars(select(Message).where(Message.status == "planned")):
            message.status, message.sent_at = "sent", message.planned_at


def receive(app: App, email: str, text: str, at: dt.datetime, kind: inb.Kind = inb.Kind.REPLY, meeting: str | None = None) -> None:
    """Record mail from a lead as the poller does: an InboundMail row, then `act` on it."""
    with transaction(app.sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.email == email)).one()
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id).order_by(Enrollment.id.desc())).first()
        thread = session.scalars(select(Thread).where(Thread.enrollment_id == enrollment.id)).first() if enrollment else None
        hard = True if kind is inb.Kind.BOUNCE else None
        found = inb.Classification(kind, reason=kind.value, new_text=text, meeting=meeting, hard=hard, status="5.1.1" if hard else None)
        key = f"<{uuid.uuid4().hex}@{email.partition('@')[2]}>"
        row = InboundMail(key=key, message_id=key, kind=kind.value, lead_id=lead.id, enrollment_id=enrollment.id if enrollment else None, thread_id=thread.id if thread else None, matched_by="headers", sender=email, subject="Re: our proposal", received_at=at, seen_at=at, new_text=text, evidence={})
        session.add(row)
        session.flush()
        act(app, session, row, found, Match(lead, enrollment, thread, "headers"), at)


def owner_answers(app: App, email: str, at: dt.datetime, waited: float | None) -> None:
    """The owner's own answer, as the poller records it from the Sent folder: an answer to a
    waiting reply (`waited` seconds after it) also closes the task to answer it."""
    with transaction(app.sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.email == email)).one()
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id)).first()
        session.add(InboundMail(key=f"<{uuid.uuid4().hex}@appneural.example>", kind="own_reply", lead_id=lead.id, sender="priya@appneural.example", received_at=at, seen_at=at, evidence={} if waited is None else {"response_seconds": waited}))
        if waited is not None:
            for task in session.scalars(select(Task).where(Task.lead_id == lead.id, Task.status == "open", Task.step_key.like("answer:%"))):
                task.status, task.done_at, task.outcome = "done", at, "answered by email"
        record(session, enrollment, at, "owner-replied", "answered by email: Re: our proposal", channel="email", lead_id=lead.id, response_seconds=waited)


def enrollment_of(app: App, email: str, sequence: str = BD) -> Enrollment:
    with app.sessions() as session:
        found = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=email), Enrollment.sequence_name == sequence)).one()
        session.expunge(found)
        return found


def tasks_of(app: App, email: str) -> list[Task]:
    with app.sessions() as session:
        rows = list(session.scalars(select(Task).join(Lead, Lead.id == Task.lead_id).where(Lead.email == email).order_by(Task.id)))
        session.expunge_all()
        return rows


def refused(workspace: Path, db: str, code: int, *args: str) -> str:
    """Run a command that must fail with `code` and change nothing; its error output."""
    before = snapshot(db)
    result = run(workspace, *args, db=db)
    assert result.exit_code == code, (args, result.output)
    assert snapshot(db) == before, args
    return " ".join(result.stderr.split())


# ---- tasks ---------------------------------------------------------------------------------------


def test_tasks_are_listed_by_due_date_and_closing_one_lets_its_sequence_go_on(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA, VIKRAM, OLIVER], seed=3)
    advance(app, clock, START + dt.timedelta(days=11))
    waiting = enrollment_of(app, ANANYA)
    assert (waiting.phase, waiting.next_action_at) == ("waiting", None)
    call = tasks_of(app, ANANYA)[0]
    assert (call.channel, call.step_key, call.status, call.title) == ("phone", "call", "open", "Call Ananya Rao (Acme Logistics)")

    listed = run(workspace, "tasks", db=db)
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if re.match(r"\d+\s+\d{4}-\d\d-\d\d ", line)]
    opened = sorted((t for email in (ANANYA, VIKRAM, OLIVER) for t in tasks_of(app, email)), key=lambda t: (t.due_at, t.id))
    assert [int(line.split()[0]) for line in rows] == [t.id for t in opened]
    ananya_row = next(line for line in rows if ANANYA in line)
    local_due = call.due_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %a %H:%M IST")
    assert re.search(rf"{local_due}\s+open\s+phone\s+Ananya Rao, Acme Logistics <{ANANYA}>\s+Priya Sharma\s+Call Ananya Rao", ananya_row), ananya_row
    assert "GMT" in next(line for line in rows if OLIVER in line)  # Rahul's mailbox is in London
    assert "OVERDUE" not in listed.stdout and "3 open, 0 overdue" in listed.stdout

    clock.set(opened[-1].due_at + dt.timedelta(hours=1))
    late = run(workspace, "tasks", "--overdue", "--owner", "Priya Sharma", db=db)
    assert late.stdout.count("OVERDUE") == 2 and OLIVER not in late.stdout and "2 open, 2 overdue" in late.stdout, late.stdout
    assert "no open tasks" in run(workspace, "tasks", "--owner", "meera@appneural.example", db=db).stdout

    assert "did you mean priya@appneural.example" in refused(workspace, db, 3, "tasks", "--owner", "priya@appneural.exmple")
    assert "--outcome" in refused(workspace, db, 2, "tasks", "done", str(call.id), "--outcome", "  ")
    assert "no task #9999" in refused(workspace, db, 3, "tasks", "done", "9999", "--outcome", "called")
    refused(workspace, db, 2, "tasks", "done", "first", "--outcome", "called")

    done = run(workspace, "tasks", "done", str(call.id), "--outcome", "Spoke to Ananya; decision on Friday", db=db)
    assert done.exit_code == 0, done.output
    assert f"task #{call.id} done for {ANANYA}; {BD} is active" in done.stdout
    after = enrollment_of(app, ANANYA)
    assert after.phase == "active" and after.next_action_at is not None and after.next_action_at >= clock.now()
    closed = tasks_of(app, ANANYA)[0]
    assert (closed.status, closed.outcome, closed.done_at) == ("done", "Spoke to Ananya; decision on Friday", clock.now())
    with app.sessions() as session:
        logged = session.scalars(select(Event).where(Event.kind == "task-done")).one()
        assert (logged.channel, logged.key_points, logged.status, logged.next_follow_up_at) == ("phone", "Spoke to Ananya; decision on Friday", "Follow-Up", after.next_action_at)

    assert "already done" in refused(workspace, db, 4, "tasks", "done", str(call.id), "--outcome", "again")
    refused(workspace, db, 4, "tasks", "skip", str(call.id))

    other = tasks_of(app, VIKRAM)[0]
    skipped = run(workspace, "tasks", "skip", str(other.id), "--reason", "he answered by email", db=db)
    assert skipped.exit_code == 0 and "skipped" in skipped.stdout, skipped.output
    assert enrollment_of(app, VIKRAM).phase == "active"
    with app.sessions() as session:
        assert session.scalars(select(Event.key_points).where(Event.kind == "task-skipped")).one() == "he answered by email"

    advance(app, clock, START + dt.timedelta(days=16))  # the closure goes out where the call is behind, only there
    with app.sessions() as session:
        closures = set(session.scalars(select(Lead.email).join(Message, Message.lead_id == Lead.id).where(Message.step_key == "closure")))
    assert closures == {ANANYA, VIKRAM}
    assert enrollment_of(app, OLIVER).phase == "waiting"
    everything = run(workspace, "tasks", "--all", db=db)
    assert re.search(rf"{call.id}\s.*\bdone\b", everything.stdout) and re.search(rf"{other.id}\s.*\bskipped\b", everything.stdout), everything.stdout


# ---- one lead ------------------------------------------------------------------------------------


def test_lead_show_prints_the_timeline_in_order_and_the_csv_round_trips(app: App, clock: FakeClock, workspace: Path, db: str, tmp_path: Path) -> None:
    app.enroll(BD, [ANANYA], seed=5)
    advance(app, clock, START + dt.timedelta(days=1))
    deliver_all(app)
    receive(app, ANANYA, "Thanks, can we talk on Thursday?", START + dt.timedelta(days=1, hours=2))
    owner_answers(app, ANANYA, START + dt.timedelta(days=1, hours=4), waited=7200)
    receive(app, ANANYA, '=HYPERLINK("http://evil.example","details")', START + dt.timedelta(days=1, hours=5))
    clock.set(START + dt.timedelta(days=2))
    assert run(workspace, "lead", "mark", ANANYA, "meeting-booked", "--note", "Demo on Thursday", db=db).exit_code == 0

    out = tmp_path / "ananya.csv"
    shown = run(workspace, "lead", "show", ANANYA.upper(), "--csv", str(out), db=db)
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert f"Ananya Rao — Head of Operations, Acme Logistics <{ANANYA}>" in text
    assert re.search(r"owner\s+Priya Sharma <priya@appneural.example>", text) and re.search(r"status\s+Active", text)
    assert re.search(r"next follow-up\s+-", text) and re.search(rf"sequence\s+{BD} v1: stopped, last step intro", text)
    kinds = ["enrolled", "reply", "owner-replied", "reply", "outcome"]
    positions = [text.index(marker) for marker in ("enrolled in", "Thanks, can we talk", "answered by email", "=HYPERLINK", "meeting-booked: Demo on Thursday")]
    assert positions == sorted(positions)
    assert "timeline (Asia/Kolkata)" in text and "Tue 24 Nov 2026 10:30 IST" in text  # the reply, in Priya's zone

    with app.sessions() as session:
        events = list(session.scalars(select(Event).join(Lead, Lead.id == Event.lead_id).where(Lead.email == ANANYA).order_by(Event.at, Event.id)))
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["at", "channel", "kind", "key_points", "status", "next_follow_up_at"]
    assert [r["kind"] for r in rows if r["kind"] in kinds] == kinds
    for row, event in zip(rows, events, strict=True):
        assert dt.datetime.fromisoformat(row["at"]) == event.at and row["at"].endswith("Z")
        assert (row["channel"], row["kind"], row["status"]) == (event.channel, event.kind, event.status)
        assert row["key_points"] == ("'" + event.key_points if event.key_points.startswith("=") else event.key_points)
        assert row["next_follow_up_at"] == (event.next_follow_up_at.isoformat().replace("+00:00", "Z") if event.next_follow_up_at else "")
    assert [r["key_points"] for r in rows if r["kind"] == "reply"][1].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it

    assert f"did you mean {ANANYA}" in refused(workspace, db, 3, "lead", "show", "ananya.rao@acme.exmple")
    assert "did you mean" not in refused(workspace, db, 3, "lead", "show", "nobody@nowhere.example")
    assert "not an email address" in refused(workspace, db, 2, "lead", "show", "ananya at acme")
    assert "--csv" in refused(workspace, db, 2, "lead", "show", ANANYA, "--csv", str(tmp_path / "no" / "such" / "dir.csv"))


def test_marking_won_ends_every_running_sequence_and_closes_the_lead(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA, VIKRAM], seed=1)
    app.enroll("support-check-in", [ANANYA], seed=2)
    advance(app, clock, START + dt.timedelta(days=3))

    assert "did you mean" in refused(workspace, db, 3, "lead", "mark", "ananya.rao@acme.exampl", "won")
    refused(workspace, db, 2, "lead", "mark", ANANYA, "maybe")

    booked = run(workspace, "lead", "mark", VIKRAM, "meeting-booked", db=db)
    assert booked.exit_code == 0 and "meeting-booked (status Follow-Up)" in booked.stdout, booked.output
    assert enrollment_of(app, VIKRAM).phase == "active"  # a meeting alone stops nothing

    won = run(workspace, "lead", "mark", ANANYA, "won", "--note", "Signed for 12 months", db=db)
    assert won.exit_code == 0, won.output
    assert f"{ANANYA}: won (status Closed); stopped {BD}, support-check-in" in won.stdout
    for sequence in (BD, "support-check-in"):
        stopped = enrollment_of(app, ANANYA, sequence)
        assert (stopped.phase, stopped.state["stop_reason"], stopped.next_action_at) == ("stopped", "marked won", None)
    with app.sessions() as session:
        lead = session.scalars(select(Lead).where(Lead.email == ANANYA)).one()
        assert lead.status == "Closed"
        outcome = session.scalars(select(Event).where(Event.lead_id == lead.id, Event.kind == "outcome")).one()
        assert outcome.data["outcome"] == "won" and outcome.status == "Closed" and outcome.next_follow_up_at is None
        assert outcome.key_points == f"won: Signed for 12 months; stopped {BD}, support-check-in"
    advance(app, clock, START + dt.timedelta(days=30))
    with app.sessions() as session:
        later = session.scalar(select(func.count()).select_from(Message).join(Lead, Lead.id == Message.lead_id).where(Lead.email == ANANYA, Message.created_at > START + dt.timedelta(days=3)))
    assert later == 0


# ---- KPIs ----------------------------------------------------------------------------------------


def test_the_report_counts_exactly_on_a_known_dataset(app: App, clock: FakeClock, workspace: Path, db: str, tmp_path: Path) -> None:
    empty = run(workspace, "report", db=db)
    assert empty.exit_code == 0 and empty.stdout.count("n/a") == 5, empty.output

    app.enroll(BD, [ANANYA, VIKRAM, ARJUN, MARCUS], seed=9)
    advance(app, clock, START + dt.timedelta(days=1))
    deliver_all(app)  # four intros
    day = START + dt.timedelta(days=1)
    receive(app, ANANYA, "Yes, Thursday works.", day + dt.timedelta(hours=1), meeting="accepted")
    receive(app, VIKRAM, "Send me the pricing, please.", day + dt.timedelta(hours=2))
    receive(app, ARJUN, "I am out of the office.", day + dt.timedelta(hours=3), kind=inb.Kind.AUTO_REPLY)
    receive(app, MARCUS, "", day + dt.timedelta(hours=4), kind=inb.Kind.BOUNCE)
    owner_answers(app, ANANYA, day + dt.timedelta(hours=2), waited=3600)
    owner_answers(app, VIKRAM, day + dt.timedelta(hours=32), waited=30 * 3600)
    owner_answers(app, VIKRAM, day + dt.timedelta(hours=40), waited=None)  # nothing was waiting for it
    receive(app, ANANYA, "Could you add the onboarding plan?", day + dt.timedelta(hours=50))
    owner_answers(app, ANANYA, day + dt.timedelta(hours=52), waited=7200)
    receive(app, VIKRAM, "Thanks, reading it now.", day + dt.timedelta(hours=60))  # not answered yet
    clock.set(START + dt.timedelta(days=5))
    assert run(workspace, "lead", "mark", ANANYA, "proposal-sent", db=db).exit_code == 0
    assert run(workspace, "lead", "mark", ARJUN, "meeting-booked", db=db).exit_code == 0  # booked without replying: not a converted reply

    out = tmp_path / "kpis.csv"
    shown = run(workspace, "report", "--csv", str(out), db=db)
    assert shown.exit_code == 0, shown.output
    lines = {line.split("  ")[0].strip(): " ".join(line.split()) for line in shown.stdout.splitlines() if "  " in line}
    assert lines["follow-up success rate"].startswith("follow-up success rate 50.0 % ≥ 60 % no 2 of 4 leads")
    assert lines["response time"].startswith("response time 2.0 h ≤ 24 h yes median of 3 answer(s); p90 30.0 h")
    assert lines["engagement"].startswith("engagement 100.0 % - - 4 replies to 4 emails sent")
    assert lines["meeting conversion"].startswith("meeting conversion 50.0 % ≥ 30 % yes 1 of 2")
    assert lines["proposal conversion"].startswith("proposal conversion 100.0 % ≥ 20 % yes 1 of 1")
    assert "emails sent 4 · replies 4 · auto-replies 1 · bounces 1 · unsubscribes 0 · open tasks 1 · overdue tasks 1" in shown.stdout
    assert "leads by CRM status: New 8 · Active 2 · Follow-Up 1 · Closed 1 · Dormant 0" in shown.stdout

    with out.open(newline="", encoding="utf-8") as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert {k: rows["follow-up success rate"][k] for k in ("value", "unit", "target", "met")} == {"value": "50.0", "unit": "%", "target": "≥ 60 %", "met": "no"}
    assert (rows["response time"]["value"], rows["response time p90"]["value"], rows["response time"]["met"]) == ("2.0", "30.0", "yes")
    assert (rows["emails sent"]["value"], rows["leads New"]["value"], rows["leads Active"]["value"], rows["overdue tasks"]["value"]) == ("4", "8", "2", "1")

    assert run(workspace, "lead", "mark", VIKRAM, "meeting-booked", db=db).exit_code == 0
    with app.sessions() as session:
        kpis = {kpi.name: kpi for kpi in crm.report(app, session).kpis}
    assert (kpis["meeting conversion"].value, kpis["proposal conversion"].value) == (1.0, 0.5)

    later = run(workspace, "report", "--since", "2026-11-28", db=db)
    assert later.exit_code == 0 and later.stdout.count("n/a") == 5, later.output  # nothing enrolled, sent or answered since
    assert "since Sat 28 Nov 2026 00:00 IST" in later.stdout
    assert "YYYY-MM-DD" in refused(workspace, db, 2, "report", "--since", "28/11/2026")


# ---- retention and erasure ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("12months", Age(12, "months")), ("18 months", Age(18, "months")), ("90days", Age(90, "days")), ("2y", Age(24, "months")), ("3 Weeks", Age(3, "weeks"))])
def test_retention_periods_in_the_forms_people_write(text: str, expected: Age) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["12", "12 parsecs", "0days", "-3months", "12m", "a year"])
def test_other_retention_periods_are_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(InputError, match="90days, 12months, 18 months, 2y"):
        parse_age(text)


def test_months_are_counted_back_on_the_calendar() -> None:
    assert Age(1, "months").before(dt.datetime(2026, 3, 31, 12, tzinfo=UTC)) == dt.datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert Age(24, "months").before(dt.datetime(2028, 2, 29, tzinfo=UTC)) == dt.datetime(2026, 2, 28, tzinfo=UTC)
    assert Age(12, "months").before(dt.datetime(2027, 1, 15, tzinfo=UTC)) == dt.datetime(2026, 1, 15, tzinfo=UTC)


def test_purge_removes_old_records_only_and_keeps_suppressions(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA, MARCUS], seed=4)
    advance(app, clock, START + dt.timedelta(days=1))
    deliver_all(app)
    receive(app, ANANYA, "Not now, thanks.", START + dt.timedelta(days=1))
    receive(app, MARCUS, "", START + dt.timedelta(days=1), kind=inb.Kind.BOUNCE)
    clock.set(START + dt.timedelta(days=400))
    assert run(workspace, "lead", "mark", VIKRAM, "meeting-booked", db=db).exit_code == 0  # a recent event
    with app.sessions() as session:
        old_events = session.scalar(select(func.count()).select_from(Event))
        unfinished = session.scalar(select(func.count()).select_from(Message).where(Message.status == "planned"))
        assert session.scalar(select(Suppression.reason)) == "bounce"

    for bad in ("12 parsecs", "12", "0months"):
        assert "90days, 12months, 18 months, 2y" in refused(workspace, db, 2, "purge", "--older-than", bad)
    before = snapshot(db)
    dry = run(workspace, "purge", "--older-than", "12months", db=db)
    assert dry.exit_code == 0, dry.output
    assert f"would delete what is older than Mon 28 Dec 2026 03:00 UTC: {old_events - 1} events, 2 inbound mail, 2 outbound messages; 1 suppression(s) stay" in " ".join(dry.stdout.split())
    assert snapshot(db) == before

    done = run(workspace, "purge", "--older-than", "12 months", "--yes", db=db)
    assert done.exit_code == 0 and "deleted" in done.stdout, done.output
    with app.sessions() as session:
        assert list(session.scalars(select(Event.kind))) == ["outcome"]
        assert session.scalar(select(func.count()).select_from(InboundMail)) == 0
        assert session.scalar(select(func.count()).select_from(Message)) == unfinished
        assert session.scalar(select(Suppression.email)) == MARCUS
        assert session.scalar(select(func.count()).select_from(Lead)) == 12
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 2
    assert "0 events, 0 inbound mail, 0 outbound messages" in run(workspace, "purge", "--older-than", "2y", db=db).stdout


def test_forget_erases_the_person_and_keeps_them_suppressed(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA, VIKRAM], seed=6)
    app.enroll("support-check-in", [ANANYA], seed=7)
    advance(app, clock, START + dt.timedelta(days=11))  # messages, threads and call tasks for both
    deliver_all(app)
    receive(app, ANANYA, "Please call me on Friday.", clock.now())
    owner_answers(app, ANANYA, clock.now() + dt.timedelta(hours=1), waited=3600)

    def vikrams() -> dict[str, int]:
        with app.sessions() as session:
            lead_id = session.scalars(select(Lead.id).where(Lead.email == VIKRAM)).one()
            return {model.__tablename__: session.scalar(select(func.count()).select_from(model).where(model.lead_id == lead_id)) for model in (Event, Message, Task, Enrollment)}

    kept = vikrams()
    assert "did you mean" in refused(workspace, db, 3, "lead", "forget", "ananya.rao@acme.exampel", "--yes")
    before = snapshot(db)
    dry = run(workspace, "lead", "forget", ANANYA, db=db)
    assert dry.exit_code == 0 and f"would erase {ANANYA}:" in dry.stdout and "--yes" in dry.stdout, dry.output
    assert "2 inbound mail, 4 messages, 5 events, 2 tasks, 2 threads, 2 enrollments, 1 lead" in dry.stdout
    assert snapshot(db) == before

    erased = run(workspace, "lead", "forget", ANANYA, "--yes", db=db)
    assert erased.exit_code == 0 and "the address stays suppressed (added)" in erased.stdout, erased.output
    traces = {table: len([row for row in rows if "ananya" in repr(row).lower()]) for table, rows in snapshot(db).items()}
    assert {table: count for table, count in traces.items() if count} == {"suppression": 1}
    with app.sessions() as session:
        assert session.scalars(select(Suppression.reason).where(Suppression.email == ANANYA)).one() == "forgotten"
        assert session.scalar(select(func.count()).select_from(Thread)) == session.scalar(select(func.count()).select_from(Thread).join(Enrollment, Enrollment.id == Thread.enrollment_id))
    assert vikrams() == kept
    refused(workspace, db, 3, "lead", "forget", ANANYA, "--yes")

    with transaction(app.sessions) as session:
        session.add(Suppression(email=VIKRAM, reason="unsubscribe", source="one-click", created_at=clock.now()))
    assert "stays suppressed (kept)" in run(workspace, "lead", "forget", VIKRAM, "--yes", db=db).stdout
    with app.sessions() as session:
        assert session.scalars(select(Suppression.reason).where(Suppression.email == VIKRAM)).one() == "unsubscribe"

    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0  # the old list comes back in
    again = run(workspace, "enroll", BD, "--lead", ANANYA, db=db)
    assert f"skipped {ANANYA}: suppressed" in again.stdout, again.output
