"""Hostile sequence files and dates: a located error in a bounded time and memory, and nothing changed."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


from tests.cli_helpers import run, seed, snapshot
from tests.conftest import DATA

HOSTILE = DATA / "broken" / "sequences"  # the located cases run with the other broken sequences (test_broken_input)
LAUGHS = r"billion_laughs\.yaml:5:6: anchors \(&\) and aliases \(\*\) are not supported; write the value out in full"
MEMORY = 1 << 30  # bytes of address space; following the aliases took more than 4.5 GB


def _limited(workspace: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process that cannot grow past MEMORY."""
    code = f"import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, ({MEMORY}, {MEMORY}))\nfrom outreach.cli import main\nsys.argv = ['outreach', *sys.argv[1:]]\nmain()\n"
    env = {**os.environ, "OUTREACH_WORKSPACE": str(workspace), "OUTREACH_DATABASE_URL": db, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_billion_laughs_is_refused_in_bounded_time_and_memory(workspace: Path, tmp_path: Path) -> None:
    """In a child process with a memory limit, so that a regression fails instead of exhausting the machine.

    On SQLite only: the database plays no part in reading the file.
    """
    workspace, db = seed(workspace, f"sqlite:///{tmp_path / 'outreach.sqlite'}")
    shutil.copy(HOSTILE / "billion_laughs.yaml", workspace / "sequences" / "billion_laughs.yaml")
    before = snapshot(db)
    for args in (["sequences", "lint"], ["enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example"]):
        started = time.monotonic()
        done = _limited(workspace, db, *args)
        assert done.returncode == 2, done.stderr
        assert re.search(LAUGHS, done.stderr), done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert time.monotonic() - started < 30
    assert snapshot(db) == before


def test_a_pause_date_out_of_range_is_refused_and_changes_nothing(seeded: tuple[Path, str]) -> None:
    workspace, db = seeded
    before = snapshot(db)
    today = dt.datetime.now(dt.UTC).date()
    for until, expected in [
        ("9999-12-31", r"--until: '9999-12-31' is more than 5 years ahead; pause until a date up to \d{4}-\d\d-\d\d, or without --until until `outreach resume`"),
        ((today + dt.timedelta(days=5 * 366)).isoformat(), r"--until: '[\d-]+' is more than 5 years ahead"),
        ((today - dt.timedelta(days=2)).isoformat(), r"--until: '[\d-]+' is in the past; give today or a later date"),
        ("0001-01-01", r"--until: '0001-01-01' is in the past"),
    ]:
        result = run(workspace, "pause", "--lead", "ananya.rao@acme.example", "--until", until, db=db)
        assert result.exit_code == 2, result.output
        assert re.search(expected, result.stderr), result.stderr
        assert "Traceback" not in result.output
    assert snapshot(db) == before
    status = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    assert status.exit_code == 0, status.output


def test_a_pause_within_range_is_kept_and_shown(seeded: tuple[Path, str]) -> None:
    workspace, db = seeded
    today = dt.datetime.now(dt.UTC).date()
    last = today.replace(year=today.year + 5) if (today.month, today.day) != (2, 29) else today.replace(year=today.year + 5, day=28)
    paused = run(workspace, "pause", "--lead", "ananya.rao@acme.example", "--until", last.isoformat(), db=db)
    assert paused.exit_code == 0, paused.output
    status = run(workspace, "status", "--lead", "ananya.rao@acme.example", db=db)
    assert status.exit_code == 0, status.output
    assert "paused" in status.output
