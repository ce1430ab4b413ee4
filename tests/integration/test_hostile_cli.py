"""Hostile starts: a database that is away, unreadable or misnamed, a workspace that is not there or
wrong, a folder where a file belongs. Each is one line naming the setting and the fix, a non-zero
exit, no traceback, and nothing changed."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from tests.cli_helpers import run, snapshot
from tests.conftest import DATA
from tests.servers import free_port

BROKEN = DATA / "broken"
COMMANDS = [["status"], ["check"], ["db", "upgrade"]]  # the three ways a command opens its database


def _one_line_error(result: Result, code: int, pattern: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word, like a server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    listener.close()
    for conn in held:
        conn.close()
    thread.join(5)


# ---- the database ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_refused_connection_names_the_setting(workspace: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = run(workspace, *command, db=f"postgresql://outreach:secret@127.0.0.1:{port}/outreach")
    line = _one_line_error(result, 1, rf"^error: OUTREACH_DATABASE_URL: cannot use the database at 127\.0\.0\.1:{port} \(.*refused.*\); start it")
    assert "secret" not in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage", r"OUTREACH_DATABASE_URL: 'garbage' is not a database URL; write postgresql://user@host/dbname or sqlite:///"),
        ("foo://x", r"OUTREACH_DATABASE_URL: 'foo://x': no database named 'foo' is supported; write postgresql://"),
        ("postgresql://h:port/x", r"OUTREACH_DATABASE_URL: 'postgresql://h:port/x' is not a database URL"),
    ],
)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_url_that_names_no_database_is_refused_at_start(workspace: Path, command: list[str], url: str, expected: str) -> None:
    _one_line_error(run(workspace, *command, db=url), 2, expected)
    assert not (workspace / "var").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_sqlite_file_whose_folder_cannot_be_made(workspace: Path, tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, where the URL wants a folder\n")
    url = f"sqlite:///{blocker}/outreach.sqlite"
    _one_line_error(run(workspace, *command, db=url), 2, rf"OUTREACH_DATABASE_URL: cannot open the SQLite file {re.escape(str(blocker))}/outreach\.sqlite \(unable to open database file\); check that its folder exists")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_corrupt_sqlite_file_is_named_and_left_as_it_was(workspace: Path, tmp_path: Path, command: list[str]) -> None:
    corrupt = tmp_path / "outreach.sqlite"
    shutil.copy(BROKEN / "db" / "corrupt.sqlite", corrupt)
    _one_line_error(run(workspace, *command, db=f"sqlite:///{corrupt}"), 2, rf"OUTREACH_DATABASE_URL: {re.escape(str(corrupt))} is not an SQLite database \(file is not a database\); restore it")
    assert corrupt.read_bytes() == (BROKEN / "db" / "corrupt.sqlite").read_bytes()


def test_a_database_that_never_answers_is_given_up_within_seconds(workspace: Path, silent_server: int) -> None:
    started = time.monotonic()
    result = run(workspace, "status", db=f"postgresql://outreach@127.0.0.1:{silent_server}/outreach")
    took = time.monotonic() - started
    _one_line_error(result, 1, rf"OUTREACH_DATABASE_URL: cannot use the database at 127\.0\.0\.1:{silent_server} \(.*timeout.*\)")
    assert took < 15, f"{took:.1f} s"


def test_a_bad_database_url_in_the_workspace_file_is_located(workspace: Path) -> None:
    path = workspace / "outreach.yaml"
    text = path.read_text()
    assert "\ndatabase_url: sqlite:///var/demo/outreach.sqlite\n" in text
    path.write_text(text.replace("\ndatabase_url: sqlite:///var/demo/outreach.sqlite\n", "\ndatabase_url: foo://x\n"))
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1) if row.startswith("database_url:"))
    result = run(workspace, "status")
    _one_line_error(result, 2, rf"outreach\.yaml:{line}:15: database_url: 'foo://x': no database named 'foo' is supported")


def test_an_unreachable_database_in_the_workspace_file_is_named_there(workspace: Path) -> None:
    path = workspace / "outreach.yaml"
    port = free_port()
    path.write_text(path.read_text().replace("database_url: sqlite:///var/demo/outreach.sqlite", f"database_url: postgresql://outreach@127.0.0.1:{port}/outreach"))
    _one_line_error(run(workspace, "check"), 1, rf"outreach\.yaml:\d+:15: database_url: cannot use the database at 127\.0\.0\.1:{port}")


# ---- the workspace ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["db", "upgrade"], ["check"], ["sequences", "lint"]], ids=" ".join)
def test_a_missing_workspace_folder_is_refused_and_not_made(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-workspace"
    result = run(missing, *command)
    _one_line_error(result, 2, rf"{re.escape(str(missing))}: no workspace here: no such folder; pass --workspace DIR \(or set OUTREACH_WORKSPACE\)")
    assert not missing.exists()


def test_an_unknown_workspace_time_zone_is_located_before_anything_runs(workspace: Path, tmp_path: Path) -> None:
    shutil.copy(BROKEN / "workspace" / "bad_timezone.yaml", workspace / "outreach.yaml")
    for command in (["check"], ["report"], ["status"]):
        result = run(workspace, *command, db=f"sqlite:///{tmp_path / 'db.sqlite'}")
        _one_line_error(result, 2, r"outreach\.yaml:2:11: timezone: .*'Nowhere/Land' is not a time zone; use an IANA name")
    assert not (tmp_path / "db.sqlite").exists()


def test_a_folder_where_a_file_belongs(workspace: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    for args in (["sequences", "lint", "sequences"], ["leads", "import", str(tmp_path)]):
        result = run(workspace, *args, db=db)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert re.search(r"is a directory", result.output), result.output
    assert snapshot(db) == {}


# ---- names that do not exist ---------------------------------------------------------------------------


def test_status_of_an_unknown_sequence_is_not_found(workspace: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    assert run(workspace, "enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example", db=db).exit_code == 0
    before = snapshot(db)

    result = run(workspace, "status", "--sequence", "nope", db=db)
    assert result.exit_code == 3, result.output
    assert re.search(r"no sequence 'nope'; known: .*bd-client-follow-up", result.stderr), result.output
    assert snapshot(db) == before

    # a sequence leads went through stays known after its file is gone
    (workspace / "sequences" / "bd-client-follow-up.yaml").unlink()
    shown = run(workspace, "status", "--sequence", "bd-client-follow-up", db=db)
    assert shown.exit_code == 0, shown.output
    assert "ananya.rao@acme.example" in shown.stdout
