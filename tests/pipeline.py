"""Drive the real pipeline (scheduler tick -> broker -> worker -> SMTP, IMAP) under a fake clock."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import dramatiq
import yaml

from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.runner import next_wakeup, prepare, step
from outreach.service import App
from tests.servers import Dovecot, SmtpServer
from workers.inprocess import InProcess

ROOT = Path(__file__).resolve().parents[1]
ALWAYS_OPEN = """name: always-open
mailbox: owner
timezone: UTC
window: {days: mon-sun, hours: "00:00-24:00"}
steps:
  - id: hello
    template: initial_outreach
"""
PASSWORD_ENV = "OUTREACH_TEST_IMAP_PASSWORD"
PASSWORD = "test-secret"
MAILBOXES = ("priya@appneural.example", "rahul@appneural.example", "meera@appneural.example", "support@appneural.example")


def make_workspace(path: Path, smtp: SmtpServer, dovecot: Dovecot | None, *, save_sent: bool = True, **mailbox_overrides: Any) -> Path:
    """The shipped workspace, its mailboxes pointed at the test servers."""
    for name in ("sequences", "templates", "examples"):
        shutil.copytree(ROOT / name, path / name, dirs_exist_ok=True)
    config = yaml.safe_load((ROOT / "outreach.yaml").read_text())
    config.pop("database_url", None)
    for box in config["mailboxes"]:
        box["smtp"] = {"host": "127.0.0.1", "port": smtp.port, "security": "none"}
        if dovecot is not None:
            box["imap"] = {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": box["address"], "password_env": PASSWORD_ENV, "save_sent": save_sent}
        else:
            box.pop("imap", None)
        box["min_interval"] = 0
        box["jitter"] = 0
        box.update(mailbox_overrides)
    (path / "outreach.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def always_open_workspace(path: Path, smtp: SmtpServer, database_url: str) -> Path:
    """The shipped workspace without IMAP, examples/leads.csv imported and enrolled in the always-open sequence."""
    from tests.cli_helpers import run

    workspace = make_workspace(path, smtp, None)
    (workspace / "sequences" / "always-open.yaml").write_text(ALWAYS_OPEN)
    assert run(workspace, "leads", "import", "examples/leads.csv", db=database_url).exit_code == 0
    assert run(workspace, "enroll", "always-open", "--all", db=database_url).exit_code == 0
    return workspace


def pipeline_with_leads(path: Path, smtp: SmtpServer, imap: Any, database_url: str, start: dt.datetime, broker: dramatiq.Broker) -> Pipeline:
    """The shipped workspace on these servers, its schema in place and examples/leads.csv imported."""
    workspace = make_workspace(path, smtp, imap)
    if database_url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    pipe = Pipeline(workspace, database_url, start, broker)
    pipe.app.import_leads(workspace / "examples" / "leads.csv")
    return pipe


class Pipeline:
    """One App with a fake clock, a broker and worker threads; `run_until` plays time forward."""

    def __init__(self, workspace: Path, database_url: str, start: dt.datetime, broker: dramatiq.Broker, threads: int = 2) -> None:
        self.clock = FakeClock(start)
        self.app = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": database_url, "OUTREACH_SECRET_KEY": "test-signing-key"}), self.clock, migrate=True)
        self.sending = InProcess(self.app, threads, broker)
        self.rounds = 0

    def prepare(self) -> None:
        prepare(self.app)

    def round(self) -> None:
        step(self.app, self.sending.enqueue, now=self.clock.now())
        self.sending.drain()
        self.rounds += 1

    def run_until(self, end: dt.datetime, max_rounds: int = 5000) -> None:
        for _ in range(max_rounds):
            self.round()
            upcoming = next_wakeup(self.app)
            if upcoming is None or upcoming > end:
                self.clock.set(end)
                return
            self.clock.set(max(upcoming, self.clock.now()))
        raise AssertionError(f"still busy after {max_rounds} rounds")

    def close(self) -> None:
        self.sending.stop()
        self.app.close()


def kill_when(script: str, args: list[str], started: threading.Event, timeout: float = 60) -> None:
    """Run a Python script in a process of its own and SIGKILL it the moment `started` is set."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert started.wait(timeout), worker.stdout.read().decode() if worker.stdout else "no output"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if worker.stdout:
            worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL
