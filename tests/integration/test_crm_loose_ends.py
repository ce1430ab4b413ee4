"""Loose ends of the CRM record, through the CLI on SQLite and PostgreSQL: a lead nobody contacted
is New (not Active), won and lost close the lead's open tasks, and retention covers drafts."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from outreach.clock import FakeClock
from outreach.db.models import Enrollment, Event, Lead, Message, SequenceVersion
from outreach.db.session import make_engine, transaction, upgrade
from outreach.mail import inbound as inb
from outreach.service import App
from tests.cli_helpers import run
from tests.integration import test_crm
from tests.integration.test_crm import (
    ANANYA,
    BD,
    START,
    VIKRAM,
    advance,
    deliver_all,
    receive,
    refused,
    tasks_of,
)

PRIYA = "priya@appneural.example"
# test_crm's fixtures: the shipped leads imported into an App on a fake clock, the CLI on the same clock
clock, db, app = test_crm.clock, test_crm.db, test_crm.app


def statuses(app: App) -> dict[str, str]:
    with app.sessions() as session:
        return dict(session.execute(select(Lead.email, Lead.status)).all())


# ---- a lead nobody has contacted ---------------------------------------------------------------


def test_an_imported_lead_is_new_until_it_is_enrolled_and_never_counts_as_active(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    assert set(statuses(app).values()) == {"New"}
    shown = run(workspace, "lead", "show", ANANYA, db=db)
    assert shown.exit_code == 0 and re.search(r"status\s+New", shown.stdout), shown.output
    report = run(workspace, "report", db=db)
    assert "leads by CRM status: New 12 · Active 0 · Follow-Up 0 · Closed 0 · Dormant 0" in report.stdout, report.output

    app.enroll(BD, [ANANYA, VIKRAM], seed=2)
    advance(app, clock, START + dt.timedelta(days=1))
    deliver_all(app)
    receive(app, ANANYA, "Yes, let's talk on Thursday.", START + dt.timedelta(days=1, hours=1))
    after = statuses(app)
    assert (after[ANANYA], after[VIKRAM]) == ("Active", "Follow-Up")
    assert sorted(after.values()).count("New") == 10
    with app.sessions() as session:
        enrolled = session.scalars(select(Event.status).join(Lead, Lead.id == Event.lead_id).where(Lead.email == VIKRAM, Event.kind == "enrolled")).one()
    assert enrolled == "Follow-Up", "the record's first line already says the lead is being followed up"
    report = run(workspace, "report", db=db)
    assert "leads by CRM status: New 10 · Active 1 · Follow-Up 1 · Closed 0 · Dormant 0" in report.stdout, report.output


def test_leads_stored_as_active_without_ever_being_enrolled_become_new(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0006")  # the models' tables as they were then: the change is to the data only
        now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        with Session(engine) as session, session.begin():
            version = SequenceVersion(name="bd", version=1, digest="x", definition={}, created_at=now)
            leads = {email: Lead(email=email, status=status, created_at=now, updated_at=now) for email, status in (("never@acme.example", "Active"), ("answered@acme.example", "Active"), ("chased@acme.example", "Follow-Up"))}
            session.add_all([version, *leads.values()])
            for email in ("answered@acme.example", "chased@acme.example"):
                session.add(Enrollment(lead=leads[email], sequence=version, sequence_name="bd", phase="stopped", state={}, seed=1, enrolled_at=now, updated_at=now))
        upgrade(engine)
        with engine.connect() as conn:
            found: dict[str, str] = dict(conn.execute(text("SELECT email, status FROM lead")).all())
        assert found == {"never@acme.example": "New", "answered@acme.example": "Active", "chased@acme.example": "Follow-Up"}
    finally:
        engine.dispose()


# ---- won and lost close the lead's tasks ---------------------------------------------------------


def test_marking_won_or_lost_closes_the_leads_open_tasks_on_its_record(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA, VIKRAM], seed=3)
    advance(app, clock, START + dt.timedelta(days=11))  # both wait for their call
    receive(app, ANANYA, "Call me next week, please.", START + dt.timedelta(days=11))  # and Ananya's reply waits for an answer
    clock.set(START + dt.timedelta(days=14))
    ananya = {t.channel: t for t in tasks_of(app, ANANYA)}
    assert set(ananya) == {"phone", "email"} and all(t.status == "open" for t in ananya.values())
    overdue = run(workspace, "tasks", "--owner", PRIYA, "--overdue", db=db)
    assert ANANYA in overdue.stdout and VIKRAM in overdue.stdout, overdue.output

    won = run(workspace, "lead", "mark", ANANYA, "won", "--note", "Signed", db=db)
    assert won.exit_code == 0, won.output
    closed_ids = sorted(t.id for t in ananya.values())
    assert f"closed task(s) {', '.join(f'#{i}' for i in closed_ids)}" in won.stdout
    for task in tasks_of(app, ANANYA):
        assert (task.status, task.outcome, task.done_at) == ("closed", "lead won", clock.now())
    overdue = run(workspace, "tasks", "--owner", PRIYA, "--overdue", db=db)
    assert ANANYA not in overdue.stdout and VIKRAM in overdue.stdout, "only the lead marked won leaves the list"
    assert re.search(rf"{closed_ids[0]}\s.*\bclosed\b", run(workspace, "tasks", "--all", db=db).stdout)

    shown = run(workspace, "lead", "show", ANANYA, db=db).stdout
    assert "task closed: lead won: Call Ananya" in shown and "task closed: lead won: Answer Ananya" in shown
    assert "won: Signed; closed 2 open task(s)" in " ".join(shown.split())
    assert shown.index("won: Signed") < shown.index("task closed: lead won")
    assert "already closed (lead won)" in refused(workspace, db, 4, "tasks", "done", str(closed_ids[0]), "--outcome", "called her")

    lost = run(workspace, "lead", "mark", VIKRAM, "lost", db=db)
    assert lost.exit_code == 0 and "closed task(s) #" in lost.stdout, lost.output
    assert [t.outcome for t in tasks_of(app, VIKRAM)] == ["lead lost"]
    assert "no open tasks" in run(workspace, "tasks", db=db).stdout


def test_an_outcome_that_does_not_close_the_lead_leaves_its_tasks_open(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA], seed=3)
    advance(app, clock, START + dt.timedelta(days=11))
    booked = run(workspace, "lead", "mark", ANANYA, "meeting-booked", db=db)
    assert booked.exit_code == 0 and "closed" not in booked.stdout, booked.output
    assert [t.status for t in tasks_of(app, ANANYA)] == ["open"]


# ---- retention -----------------------------------------------------------------------------------


def test_purge_removes_old_drafts_too(app: App, clock: FakeClock, workspace: Path, db: str) -> None:
    app.enroll(BD, [ANANYA], seed=4)
    advance(app, clock, START + dt.timedelta(days=1))
    deliver_all(app)
    with app.sessions() as session:
        intro = session.scalars(select(Message).where(Message.status == "sent")).one()
        row = {c: getattr(intro, c) for c in ("enrollment_id", "lead_id", "mailbox_id", "sender", "recipient", "subject", "planned_at", "not_before", "attempts", "created_at")}
    with transaction(app.sessions) as session:  # the manager's note, left in her Drafts folder, as an escalation leaves it
        session.execute(insert(Message).values(**row, direction="out", kind="draft", status="drafted", step_key="escalate-message", template="manager_reengage", message_id="<note@appneural.example>"))
    receive(app, ANANYA, "", START + dt.timedelta(days=1), kind=inb.Kind.AUTO_REPLY)
    clock.set(START + dt.timedelta(days=400))

    dry = run(workspace, "purge", "--older-than", "12months", db=db)
    assert dry.exit_code == 0 and "2 outbound messages" in dry.stdout, dry.output
    assert run(workspace, "purge", "--older-than", "12months", "--yes", db=db).exit_code == 0
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
