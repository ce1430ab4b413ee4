"""Ctrl-C on `outreach run`: the terminal interrupts the whole process group, and everything stops quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.cli_helpers import run
from tests.pipeline import make_workspace
from tests.servers import Dovecot, SmtpServer

ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_stops_run_and_its_reading_workers_without_a_traceback(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    workspace = make_workspace(tmp_path / "ws", smtp_server, dovecot)
    assert run(workspace, "db", "upgrade", db=db).exit_code == 0
    env = {**os.environ, "OUTREACH_WORKSPACE": str(workspace), "OUTREACH_DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    # a session of its own, as a terminal gives a command: Ctrl-C reaches every process of its group
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli", "run", "--interval", "0.2", "--threads", "2", "--listen", ""],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(": pass:" in line for line in list(lines)) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "".join(lines)
        assert any(": pass:" in line for line in list(lines)), "".join(lines)  # up: the pollers have made a pass
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()
    output = "".join(lines)
    assert process.returncode in (0, 130), output
    assert took < 10, f"{took:.1f} s to stop\n{output}"
    assert "Traceback" not in output, output
    assert "KeyboardInterrupt" not in output, output
    # every process of the group is gone: the reading workers were stopped with their parent (and
    # multiprocessing's resource tracker ends once it has seen the parent go)
    deadline = time.monotonic() + 5
    while (alive := _alive_in_group(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"processes of the group outlived `outreach run`: {alive}\n{output}"


def _alive_in_group(group: int) -> list[str]:
    """The processes of a process group that still run (not zombies, which have exited and wait for their reaper)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        state, _ppid, pgrp = text[name_end + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            alive.append(f"{stat.parent.name} {text[: name_end + 1]}")
    return alive
