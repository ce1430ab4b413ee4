"""A mailbox's daily cap counts the mail to leads: a notice to a colleague goes out whatever the
count, and takes no lead's slot. Against aiosmtpd, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import Enrollment, Lead, Mailbox
from outreach.db.session import transaction
from outreach.scheduler import plan_message
from tests.pipeline import ALWAYS_OPEN, Pipeline, make_workspace
from tests.servers import SmtpServer

START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)  # Monday 08:30 in India, Priya's zone
PRIYA, MEERA = "priya@appneural.example", "meera@appneural.example"  # Meera is Priya's manager
ANANYA, VIKRAM, ARJUN = "ananya.rao@acme.example", "vikram@sundaram.example.com", "arjun.kapoor@example.org"  # Priya's leads


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, database_url: str, stub_broker: Any) -> Iterator[Pipeline]:
    workspace = make_workspace(tmp_path / "ws", smtp_server, None, daily_cap=1)
    (workspace / "sequences" / "always-open.yaml").write_text(ALWAYS_OPEN)
    if database_url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    pipe = Pipeline(workspace, database_url, START, stub_broker)
    pipe.app.import_leads(workspace / "examples" / "leads.csv")
    pipe.prepare()
    yield pipe
    pipe.close()


def notify_manager(pipe: Pipeline, about: str, key: str) -> None:
    """A notice to Priya's manager from Priya's mailbox, planned now, as an escalation plans one."""
    with transaction(pipe.app.sessions) as session:
        enrollment = session.scalars(select(Enrollment).join(Lead).where(Lead.email == about)).one()
        mailbox = session.scalars(select(Mailbox).where(Mailbox.address == PRIYA)).one()
        plan_message(session, enrollment, mailbox, None, key, None, MEERA, f"Please look at {about}", pipe.clock.now(), kind="notify", body="The story of the thread.\n")


def sent_to(smtp: SmtpServer, recipient: str) -> list[dt.datetime]:
    return [parsedate_to_datetime(r.message["Date"]) for r in smtp.received if r.recipients == [recipient]]


def test_notices_neither_wait_for_the_cap_nor_take_a_leads_slot(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    pipeline.app.enroll("always-open", [ANANYA, ARJUN], seed=1)
    pipeline.run_until(START + dt.timedelta(hours=1))
    today = [r for r in smtp_server.received if r.recipients[0] in (ANANYA, ARJUN)]
    assert len(today) == 1, "the cap of 1 holds for leads: the second lead's email waits for tomorrow"

    notify_manager(pipeline, ANANYA, "review:1")
    pipeline.run_until(START + dt.timedelta(hours=2))
    assert len(sent_to(smtp_server, MEERA)) == 1, "the cap is used up, and the notice to the manager went out all the same"

    pipeline.run_until(START + dt.timedelta(days=1))  # Tuesday 08:30 in India: the waiting lead's email is today's one
    assert len(sent_to(smtp_server, ANANYA) + sent_to(smtp_server, ARJUN)) == 2
    tuesday = START + dt.timedelta(days=1, hours=2)
    pipeline.clock.set(tuesday)
    notify_manager(pipeline, ARJUN, "review:2")
    pipeline.run_until(tuesday + dt.timedelta(minutes=30))
    assert len(sent_to(smtp_server, MEERA)) == 2

    wednesday = START + dt.timedelta(days=2)
    pipeline.clock.set(wednesday)
    notify_manager(pipeline, ANANYA, "review:3")
    pipeline.run_until(wednesday + dt.timedelta(minutes=30))
    pipeline.app.enroll("always-open", [VIKRAM], seed=2)
    pipeline.run_until(wednesday + dt.timedelta(hours=1))
    [hello] = sent_to(smtp_server, VIKRAM)
    assert hello.date() == wednesday.date(), "the notice sent first that day took no lead's slot"
    assert len(sent_to(smtp_server, MEERA)) == 3
