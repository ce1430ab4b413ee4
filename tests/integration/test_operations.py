"""What an operator sees: a line a round (text or JSON), one line and no traceback for an outage
the program rides out, a Prometheus endpoint, and `outreach status` telling in flight from stuck."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import select, update

from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.db.models import Message
from outreach.db.session import transaction
from outreach.logs import outage
from outreach.mail.transport import TemporaryFailure
from outreach.runner import run_scheduler
from outreach.scheduler import tick
from outreach.service import App
from tests.cli_helpers import run
from tests.pipeline import always_open_workspace
from tests.servers import SmtpServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def _workspace(tmp_path: Path, smtp: SmtpServer) -> tuple[Path, str]:
    db = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    return always_open_workspace(tmp_path / "ws", smtp, db), db


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_the_scheduler_logs_json_a_round_tells_a_broker_outage_in_one_line_and_serves_metrics(tmp_path: Path, smtp_server: SmtpServer) -> None:
    workspace, db = _workspace(tmp_path, smtp_server)
    metrics_port, dead_broker = free_port(), free_port()  # nothing listens where the broker should be
    env = {
        **os.environ, "OUTREACH_WORKSPACE": str(workspace), "OUTREACH_DATABASE_URL": db, "PYTHONPATH": str(ROOT),
        "OUTREACH_BROKER_URL": f"redis://127.0.0.1:{dead_broker}/0", "OUTREACH_SECRET_KEY": "test-signing-key",
    }
    args = [sys.executable, "-m", "outreach.cli", "--log-format", "json", "scheduler", "--interval", "0.3", "--metrics", f"127.0.0.1:{metrics_port}"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        scraped = ""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                scraped = _scrape(metrics_port)
            except OSError:
                scraped = ""
            if "outreach_outbox_due 12.0" in scraped:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a few more rounds with the broker away
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, errors
    assert "outreach_outbox_due 12.0" in scraped, scraped
    assert 'outreach_outbox_messages{status="planned"} 12.0' in scraped
    assert "Traceback" not in errors, errors
    lines = [json.loads(line) for line in errors.splitlines() if line.strip()]  # every line is one JSON object
    rounds = [line for line in lines if line.get("event") == "round"]
    assert rounds and rounds[0]["planned"] == 12 and rounds[0]["handed"] == 0 and "ms" in rounds[0]
    refused = [line for line in lines if "the broker did not take 12 message(s)" in line["message"]]
    assert len(refused) >= 2 and all(line["level"] == "WARNING" for line in refused)  # each round tries again


def test_a_database_outage_is_one_line_and_the_loop_goes_on(tmp_path: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace, db = _workspace(tmp_path, smtp_server)
    app = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": db, "OUTREACH_SECRET_KEY": "k"}))
    stop = threading.Event()
    rounds = 0

    def enqueue(_: list[int]) -> None:
        nonlocal rounds
        rounds += 1
        if rounds >= 2:
            stop.set()

    import outreach.runner as runner

    real_step = runner.step
    failures = iter([sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused"))])

    def flaky(*args: object, **kwargs: object) -> runner.StepResult:
        for exc in failures:
            raise exc
        return real_step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "step", flaky)  # the first round meets a database that is away
    try:
        with caplog.at_level(logging.INFO, logger="outreach.runner"):
            run_scheduler(app, enqueue, stop, interval=0.05)
    finally:
        app.close()
    failed = [r for r in caplog.records if "round failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None
    assert "the database is unreachable ([Errno 111] Connection refused); next round in" in failed[0].getMessage()
    assert any(r.getMessage().startswith("round: 12 enrollment(s) due") for r in caplog.records)


def test_outages_are_told_apart_from_defects() -> None:
    import redis.exceptions

    assert outage(sqlalchemy.exc.OperationalError("x", {}, OSError("server closed the connection unexpectedly"))) == "the database is unreachable (server closed the connection unexpectedly)"
    assert outage(redis.exceptions.ConnectionError("Error 111 connecting")) == "the broker is unreachable (Error 111 connecting)"
    assert outage(TemporaryFailure("IMAP select on 127.0.0.1:143 failed: [Errno 104]")) == "IMAP select on 127.0.0.1:143 failed: [Errno 104]"
    assert outage(ValueError("a defect")) is None
    assert outage(sqlalchemy.exc.IntegrityError("x", {}, ValueError("duplicate key"))) is None


def test_status_tells_what_went_out_what_is_in_flight_and_what_is_stuck(tmp_path: Path, smtp_server: SmtpServer) -> None:
    workspace, db = _workspace(tmp_path, smtp_server)
    now = dt.datetime.now(dt.timezone.utc)
    app = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": db, "OUTREACH_SECRET_KEY": "k"}), FakeClock(now))
    try:
        app_ids = tick(app, now=now).messages
        assert len(app_ids) == 12
        with transaction(app.sessions) as session:
            ids = sorted(session.scalars(select(Message.id)))
            session.execute(update(Message).where(Message.id.in_(ids[:3])).values(status="sent", sent_at=now - dt.timedelta(minutes=5)))
            session.execute(update(Message).where(Message.id.in_(ids[3:5])).values(status="sending", not_before=now + dt.timedelta(minutes=1)))
            session.execute(update(Message).where(Message.id == ids[5]).values(status="sending", not_before=now - dt.timedelta(minutes=3)))
            session.execute(update(Message).where(Message.id.in_(ids[6:8])).values(not_before=now - dt.timedelta(minutes=30)))
            session.execute(update(Message).where(Message.id.in_(ids[8:])).values(not_before=now + dt.timedelta(hours=2)))
    finally:
        app.close()
    shown = run(workspace, "status", db=db)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "outbox: 3 accepted by the mail servers (3 in the last hour)" in text
    assert "in flight: 2 being sent, 2 due and waiting for a worker, 4 waiting for their time" in text
    assert "stuck: 1 left in sending by a worker that stopped (lease over for 3 min)" in text
    assert "stuck: 2 due for more than 10 min and not taken (oldest 30 min)" in text
