"""The foundation end to end through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.db.models import Enrollment, Event, Lead, SequenceVersion, Suppression
from outreach.service import App, state_from_json, state_to_json
from outreach.sequences import engine as eng
from tests.cli_helpers import run, snapshot

UTC = dt.timezone.utc


@pytest.fixture
def open_app() -> Iterator[Callable[..., App]]:
    """Open an App on a workspace and database; every one is closed after the test."""
    opened: list[App] = []

    def factory(workspace: Path, db: str, clock: FakeClock | None = None) -> App:
        app = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": db}), clock, migrate=False)
        opened.append(app)
        return app

    yield factory
    for app in opened:
        app.close()

@pytest.fixture
def db(workspace: Path, database_url: str) -> str:
    assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    return database_url


def test_import_is_an_idempotent_upsert_by_normalised_address(open_app: Callable[..., App], workspace: Path, db: str, tmp_path: Path) -> None:
    first = run(workspace, "leads", "import", "examples/leads.csv", db=db)
    assert first.exit_code == 0, first.output
    assert re.search(r"12 new, 0 updated, 0 unchanged", first.stdout)
    again = run(workspace, "leads", "import", "examples/leads.csv", db=db)
    assert re.search(r"0 new, 0 updated, 12 unchanged", again.stdout), again.stdout
    # a Salesforce-style export of the same person, address in other case, updates her
    sf = tmp_path / "salesforce.csv"
    sf.write_text("First Name,Last Name,Email,Account Name,Title,Mailing Country,Lead Owner,Annual Revenue\nAnanya,Rao,ANANYA.RAO@Acme.Example,Acme Logistics Pvt Ltd,COO,India,Priya Sharma,12M\n")
    updated = run(workspace, "leads", "import", str(sf), db=db)
    assert re.search(r"0 new, 1 updated", updated.stdout), updated.output
    with open_app(workspace, db).sessions() as session:
        lead = session.scalars(select(Lead).where(Lead.email == "ananya.rao@acme.example")).one()
        assert (lead.company, lead.title, lead.country) == ("Acme Logistics Pvt Ltd", "COO", "IN")
        assert lead.fields["annual_revenue"] == "12M"
        assert lead.fields["industry"] == "Logistics"  # kept from the first import
        assert lead.owner is not None and lead.owner.email == "priya@appneural.example"
        assert len(list(session.scalars(select(Lead.email)))) == 12


def test_pipedrive_headers_and_explicit_mapping(open_app: Callable[..., App], workspace: Path, db: str, tmp_path: Path) -> None:
    csv = tmp_path / "pipedrive.csv"
    csv.write_text("Person - Name;Person - Email;Organization - Name;Contact Zone\nLin Wei;lin@example.org;Harbour Pte;Asia/Singapore\n")
    result = run(workspace, "leads", "import", str(csv), "--map", "Person - Name=first_name", "--map", "Contact Zone=timezone", "--owner", "rahul@appneural.example", db=db)
    assert result.exit_code == 0, result.output
    with open_app(workspace, db).sessions() as session:
        lead = session.scalars(select(Lead).where(Lead.email == "lin@example.org")).one()
        assert (lead.first_name, lead.company, lead.timezone) == ("Lin Wei", "Harbour Pte", "Asia/Singapore")
        assert lead.owner is not None and lead.owner.email == "rahul@appneural.example"


def test_enroll_plan_status_and_the_lifecycle_commands(open_app: Callable[..., App], workspace: Path, db: str) -> None:
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    enrolled = run(workspace, "enroll", "bd-client-follow-up", "--all", db=db)
    assert enrolled.exit_code == 0, enrolled.output
    assert "enrolled 12 lead(s)" in enrolled.stdout
    again = run(workspace, "enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example", db=db)
    assert "skipped ananya.rao@acme.example: already in bd-client-follow-up" in again.stdout

    status = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    steps = [re.split(r"\s{2,}", line.strip())[1] for line in lines if re.match(r"\s*\d{4}-\d\d-\d\d \w{3} \d\d:\d\d", line)]
    assert steps == ["intro", "proposal-check", "reminder", "call", "closure", "escalate", "dormant", "revisit"]
    assert "Re: " in status.stdout and "Meera Nair" in status.stdout and "re-engagement" in status.stdout

    summary = run(workspace, "status", db=db)
    assert re.search(r"bd-client-follow-up\W+active\W+12", summary.stdout), summary.stdout

    paused = run(workspace, "pause", "--lead", "ananya.rao@acme.example", "--until", (dt.date.today() + dt.timedelta(days=400)).isoformat(), db=db)  # within the 5 years --until allows
    assert paused.exit_code == 0 and "now paused" in paused.stdout, paused.output
    assert run(workspace, "pause", "--lead", "ananya.rao@acme.example", db=db).exit_code == 0  # an open pause replaces a dated one
    resumed = run(workspace, "resume", "--lead", "ananya.rao@acme.example", db=db)
    assert resumed.exit_code == 0 and "now active" in resumed.stdout, resumed.output
    stopped = run(workspace, "unenroll", "--lead", "ananya.rao@acme.example", db=db)
    assert stopped.exit_code == 0 and "now stopped" in stopped.stdout
    after = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    assert "nothing planned" in after.stdout
    gone = run(workspace, "resume", "--lead", "ananya.rao@acme.example", db=db)
    assert gone.exit_code == 3 and "no running enrollment" in gone.output

    with open_app(workspace, db).sessions() as session:
        kinds = list(session.scalars(select(Event.kind).join(Lead, Lead.id == Event.lead_id).where(Lead.email == "ananya.rao@acme.example").order_by(Event.id)))
        assert kinds == ["enrolled", "paused", "paused", "resumed", "unenrolled"]
        lead = session.scalars(select(Lead).where(Lead.email == "ananya.rao@acme.example")).one()
        assert lead.status == "Closed"


def test_suppressed_leads_are_not_enrolled(open_app: Callable[..., App], workspace: Path, db: str) -> None:
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    app = open_app(workspace, db)
    with app.sessions() as session, session.begin():
        session.add(Suppression(email="ananya.rao@acme.example", reason="bounce", created_at=dt.datetime.now(UTC)))
    result = run(workspace, "enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example", "--lead", "vikram@sundaram.example.com", db=db)
    assert "enrolled 1 lead(s)" in result.stdout
    assert "skipped ananya.rao@acme.example: suppressed" in result.stdout


def test_lead_data_is_data_never_template_code(open_app: Callable[..., App], workspace: Path, db: str, tmp_path: Path) -> None:
    csv = tmp_path / "tricky.csv"
    csv.write_text('Email,First Name,Company,Owner\nmallory@example.net,{{ 7*7 }},"<script>alert(1)</script> & Co",priya@appneural.example\n')
    assert run(workspace, "leads", "import", str(csv), db=db).exit_code == 0
    shown = run(workspace, "preview", "bd-client-follow-up", "intro", "--lead", "mallory@example.net", db=db)
    assert shown.exit_code == 0, shown.output
    assert "{{ 7*7 }}" in shown.stdout and "49" not in shown.stdout
    assert "<script>alert(1)</script> & Co" in shown.stdout  # the text part is plain text
    app = open_app(workspace, db)
    preview = app.preview("bd-client-follow-up", "intro", "mallory@example.net")
    assert preview.rendered.html is not None
    assert "<script>" not in preview.rendered.html and "&lt;script&gt;" in preview.rendered.html
    assert "\n" not in preview.subject


def test_preview_threads_follow_ups_under_the_first_subject(workspace: Path, db: str) -> None:
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    intro = run(workspace, "preview", "bd-client-follow-up", "intro", "--lead", "ananya.rao@acme.example", db=db)
    follow = run(workspace, "preview", "bd-client-follow-up", "reminder", "--lead", "ananya.rao@acme.example", db=db)
    subject = re.search(r"Subject: (.+)", intro.stdout)
    assert subject is not None
    assert f"Subject: Re: {subject.group(1)}" in follow.stdout
    assert "From:    Priya Sharma <priya@appneural.example>" in intro.stdout
    assert "To:      ananya.rao@acme.example" in intro.stdout
    assert "thread #1" in follow.stdout


def test_a_changed_sequence_is_a_new_version_and_enrollments_go_on_by_step_id(open_app: Callable[..., App], workspace: Path, db: str) -> None:
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    assert run(workspace, "enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example", db=db).exit_code == 0
    clock = FakeClock(dt.datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    app = open_app(workspace, db, clock)
    with app.sessions() as session, session.begin():  # as if intro..reminder had been sent
        enrollment = session.scalars(select(Enrollment)).one()
        state = state_from_json(enrollment.state)
        enrollment.state = state_to_json(eng.State(phase=eng.Phase.ACTIVE, anchor_at=clock.now(), seed=state.seed, last_step="reminder", thread=1))
    path = workspace / "sequences" / "bd-client-follow-up.yaml"
    text = path.read_text()
    start = text.index("  - id: reminder")
    end = text.index("  - id: call")
    path.write_text(text[:start] + text[end:])  # the reminder step is removed
    assert run(workspace, "sequences", "lint", db=db).exit_code == 0
    status = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    assert "v1" in status.stdout  # reading changes nothing
    other = run(workspace, "enroll", "bd-client-follow-up", "--lead", "vikram@sundaram.example.com", db=db)
    assert other.exit_code == 0, other.output
    app = open_app(workspace, db)
    with app.sessions() as session:
        versions = list(session.scalars(select(SequenceVersion.version).where(SequenceVersion.name == "bd-client-follow-up").order_by(SequenceVersion.version)))
        assert versions == [1, 2]
        enrollment = session.scalars(select(Enrollment).order_by(Enrollment.id)).first()
        assert enrollment is not None and enrollment.sequence.version == 2
        assert state_from_json(enrollment.state).last_step == "proposal-check"  # next: the call, the reminder being gone
        assert session.scalars(select(Event.kind).where(Event.kind == "sequence-updated")).one()
    status = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    steps = [re.split(r"\s{2,}", line.strip())[1] for line in status.stdout.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\d", line)]
    assert steps[0] == "call" and "reminder" not in steps


def test_postgres_refuses_an_old_schema_until_upgraded(workspace: Path, postgres_url: str) -> None:
    before = snapshot(postgres_url)
    refused = run(workspace, "leads", "import", "examples/leads.csv", db=postgres_url)
    assert refused.exit_code == 2 and "run `outreach db upgrade`" in refused.stderr
    assert snapshot(postgres_url) == before
    assert run(workspace, "db", "upgrade", db=postgres_url).exit_code == 0
    assert run(workspace, "check", db=postgres_url).exit_code == 0
