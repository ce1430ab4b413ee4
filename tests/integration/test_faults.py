"""A worker killed (SIGKILL) in the middle of sending: afterwards every step is delivered exactly once."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import Event, Message
from outreach.scheduler import tick
from tests.pipeline import Pipeline, kill_when, make_workspace
from tests.servers import Dovecot, Faults, Received, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday, inside the Indian window
ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import datetime as dt, sys
from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.delivery import deliver
from outreach.service import App
workspace, url, pk, when = sys.argv[1:5]
now = dt.datetime.fromisoformat(when)
app = App(load_settings(__import__("pathlib").Path(workspace), {"OUTREACH_DATABASE_URL": url, "OUTREACH_SECRET_KEY": "test-signing-key"}), FakeClock(now), migrate=False)
print("delivering", flush=True)
deliver(app, int(pk), now=now)
print("delivered", flush=True)
"""


@pytest.fixture
def pipe(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Any:
    workspace = make_workspace(tmp_path / "ws", smtp_server, dovecot, save_sent=False)  # a server that files Sent itself
    if database_url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    pipeline = Pipeline(workspace, database_url, START, stub_broker)
    pipeline.app.import_leads(workspace / "examples" / "leads.csv")
    pipeline.app.enroll("bd-client-follow-up", ["ananya.rao@acme.example"], seed=5)
    pipeline.prepare()
    yield pipeline
    pipeline.close()


def _to_lead(smtp: SmtpServer) -> list[Received]:
    return [r for r in smtp.received if r.recipients == ["ananya.rao@acme.example"]]  # not the escalation notice to the manager


def _kill_mid_send(pipeline: Pipeline, smtp: SmtpServer, started: threading.Event, database_url: str) -> int:
    planned = tick(pipeline.app, now=pipeline.clock.now())
    assert len(planned.messages) == 1
    pk = planned.messages[0]
    kill_when(WORKER, [str(pipeline.app.settings.root), database_url, str(pk), pipeline.clock.now().isoformat()], started)
    with pipeline.app.sessions() as session:
        assert session.get(Message, pk).status == "sending"  # type: ignore[union-attr]
    return pk


def test_killed_before_the_server_accepted_the_message_is_resent_once(pipe: Pipeline, smtp_server: SmtpServer, database_url: str) -> None:
    started = threading.Event()
    smtp_server.handler.set_faults(Faults(hang_data=30, on_accept=lambda _: started.set()))
    pk = _kill_mid_send(pipe, smtp_server, started, database_url)
    time.sleep(0.3)
    assert smtp_server.received == []
    smtp_server.handler.set_faults(Faults())
    # the lease keeps other workers off it; once it runs out, the Sent folder is searched, then it is resent
    pipe.run_until(START + dt.timedelta(seconds=pipe.app.settings.workspace.send_lease - 1))
    assert smtp_server.received == []
    pipe.run_until(START + dt.timedelta(days=30))
    intros = [r for r in smtp_server.received if r.message["Message-ID"] == _message_id(pipe, pk)]
    assert len(intros) == 1
    assert len(_to_lead(smtp_server)) == 4  # the four emails of the cadence, each once


def test_killed_after_the_server_accepted_it_is_found_in_sent_and_not_sent_again(pipe: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str) -> None:
    started = threading.Event()

    def accepted(received: Received) -> None:  # like Gmail: accepted, delivered, and filed in Sent
        dovecot.append(received.sender, "Sent", received.data)
        started.set()

    smtp_server.handler.set_faults(Faults(hang_data=30, accept_before_hang=True, on_accept=accepted))
    smtp_server.handler.received.clear()
    pk = _kill_mid_send(pipe, smtp_server, started, database_url)
    smtp_server.handler.set_faults(Faults())
    pipe.run_until(START + dt.timedelta(days=30))
    assert [r.message["Message-ID"] for r in smtp_server.received].count(_message_id(pipe, pk)) == 0  # never sent a second time
    assert len(_to_lead(smtp_server)) == 3  # the three follow-ups
    with pipe.app.sessions() as session:
        message = session.get(Message, pk)
        assert message is not None and message.status == "sent" and message.saved_to_sent
        recovered = session.scalars(select(Event).where(Event.kind == "email-sent", Event.data["message"].as_integer() == pk)).one()
        assert "found in Sent" in recovered.key_points


def _message_id(pipe: Pipeline, pk: int) -> str:
    with pipe.app.sessions() as session:
        message = session.get(Message, pk)
        assert message is not None and message.message_id
        return message.message_id
