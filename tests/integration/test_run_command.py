"""`outreach run` end to end: a real process, the system clock, in-process workers, aiosmtpd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli_helpers import run
from tests.pipeline import always_open_workspace
from tests.servers import SmtpServer


def test_run_sends_what_is_due_and_stops_cleanly_on_sigterm(tmp_path: Path, smtp_server: SmtpServer) -> None:
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    workspace = always_open_workspace(tmp_path / "ws", smtp_server, db)
    env = {**os.environ, "OUTREACH_WORKSPACE": str(workspace), "OUTREACH_DATABASE_URL": db, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "outreach.cli", "run", "--interval", "0.2", "--threads", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(smtp_server.received) < 12 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "outreach running" in output
    assert sorted(r.recipients[0] for r in smtp_server.received) == sorted({r.recipients[0] for r in smtp_server.received})
    assert len(smtp_server.received) == 12
    status = run(workspace, "status", db=db)
    assert "outbox: 12 accepted by the mail servers (12 in the last hour)" in status.stdout, status.stdout
    assert "in flight: 0 being sent, 0 due and waiting for a worker" in status.stdout, status.stdout
