"""Every command of `outreach`, against every broken input in tests/data/broken/ it reads: a
non-zero exit, no traceback, and the database as it was.

The commands are read from the typer app, so a new command fails here until COMMAND_LINES says how
to call it and what it reads. The inputs are read from tests/data/broken/, a folder a kind (its
README says how each is used): a new file is covered as it lands; a new folder fails here until
KINDS names it. One input is no file: a --workspace folder that does not exist.
"""

from __future__ import annotations

import logging
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from outreach.cli import app
from tests.cli_helpers import run, snapshot
from tests.conftest import DATA, ROOT

BROKEN = DATA / "broken"
LEAD = "ananya.rao@acme.example"
SEQUENCE = "re-engagement"  # the one good sequence of the workspace here: short, so the many runs lint little
CSV = "{csv}"  # in a command line: the CSV file under test, or the good example for other kinds

WORKSPACE, DB, SEQUENCES, TEMPLATES, LEADS = "workspace", "db", "sequences", "templates", "csv"
ALL = frozenset({WORKSPACE, DB})  # what every command reads (the demo brings its own database)
DEFINITIONS = ALL | {SEQUENCES, TEMPLATES}  # and the sequences, every step rendered

# each command: a command line that would work on good input, and the kinds of input it reads
COMMAND_LINES: dict[tuple[str, ...], tuple[list[str], frozenset[str]]] = {
    ("db", "upgrade"): ([], ALL),
    ("check",): ([], DEFINITIONS),
    ("sequences", "lint"): ([], DEFINITIONS),
    ("sequences", "list"): ([], DEFINITIONS),
    ("preview",): ([SEQUENCE, "check-in", "--lead", LEAD], DEFINITIONS),
    ("leads", "import"): ([CSV], ALL | {LEADS}),
    ("enroll",): ([SEQUENCE, "--lead", LEAD], DEFINITIONS),
    ("unenroll",): (["--lead", LEAD], DEFINITIONS),
    ("pause",): (["--lead", LEAD], DEFINITIONS),
    ("resume",): (["--lead", LEAD], DEFINITIONS),
    ("status",): ([], ALL),
    ("demo",): (["--days", "1"], (DEFINITIONS - {DB})),
    ("run",): (["--listen", "", "--interval", "0.1", "--threads", "1"], DEFINITIONS),
    ("scheduler",): (["--interval", "0.1"], DEFINITIONS),
    ("poll",): ([], DEFINITIONS),
    ("serve",): (["--listen", "127.0.0.1:0"], ALL),
    ("tasks",): ([], ALL),
    ("tasks", "done"): (["1", "--outcome", "called"], ALL),
    ("tasks", "skip"): (["1"], ALL),
    ("lead", "show"): ([LEAD], ALL),
    ("lead", "mark"): ([LEAD, "meeting-booked"], ALL),
    ("lead", "forget"): ([LEAD], ALL),
    ("report",): ([], ALL),
    ("purge",): (["--older-than", "12months"], ALL),
}

KINDS = {
    "workspace": (WORKSPACE, "*.yaml"),
    "db": (DB, "*"),
    "sequences": (SEQUENCES, "*.yaml"),
    "templates": (TEMPLATES, "*.j2"),
    "csv": (LEADS, "*.csv"),
}
SECONDS = 60  # a command that has not failed by then has started on broken input


def _commands(group: TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words, subcommands included; a group that runs by itself is a command too."""
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, TyperGroup):
            if command.invoke_without_command:
                yield path
            yield from _commands(command, path)
        else:
            yield path


def test_every_command_has_a_command_line_here() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    found = set(_commands(root))
    assert found == set(COMMAND_LINES), f"add to COMMAND_LINES: {sorted(found - set(COMMAND_LINES))}; gone: {sorted(set(COMMAND_LINES) - found)}"


def test_every_folder_of_broken_inputs_has_a_kind() -> None:
    folders = {path.name for path in BROKEN.iterdir() if path.is_dir()}
    assert folders == set(KINDS), f"say in KINDS how these are used: {sorted(folders - set(KINDS))}"


@dataclass(frozen=True)
class Case:
    kind: str
    file: Path | None  # None: the missing workspace folder

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.file.name}" if self.file else "missing workspace folder"


def _cases() -> list[Case]:
    cases = [Case(WORKSPACE, None)]
    for folder, (kind, pattern) in sorted(KINDS.items()):
        cases += [Case(kind, path) for path in sorted((BROKEN / folder).glob(pattern)) if path.is_file() and not path.name.startswith(".")]
    return cases


@pytest.fixture(scope="module")
def seeded_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The workspace and one SQLite database with its leads imported and enrolled, for every case."""
    base = tmp_path_factory.mktemp("seeded")
    workspace = base / "workspace"
    _copy_workspace(workspace)
    db = f"sqlite:///{base / 'outreach.sqlite'}"
    for args in (["db", "upgrade"], ["leads", "import", "examples/leads.csv"], ["enroll", SEQUENCE, "--all"]):
        result = run(workspace, *args, db=db)
        assert result.exit_code == 0, result.output
    return workspace, db


def _copy_workspace(to: Path) -> None:
    """The shipped workspace with one of its sequences."""
    for name in ("templates", "examples"):
        shutil.copytree(ROOT / name, to / name)
    (to / "sequences").mkdir()
    shutil.copy(ROOT / "sequences" / f"{SEQUENCE}.yaml", to / "sequences")
    shutil.copy(ROOT / "outreach.yaml", to / "outreach.yaml")


@dataclass(frozen=True)
class Setup:
    workspace: Path
    db: str | None
    csv: str


def _apply(case: Case, tmp_path: Path, good_db: str) -> Setup:
    workspace = tmp_path / "workspace"
    _copy_workspace(workspace)
    db: str | None = good_db
    csv = "examples/leads.csv"
    file = case.file
    if file is None:
        shutil.rmtree(workspace)
    elif case.kind == WORKSPACE:
        shutil.copy(file, workspace / "outreach.yaml")
        db = None  # the file's own database_url, or the default
    elif case.kind == DB and file.suffix == ".url":
        db = file.read_text().strip()
    elif case.kind == DB:
        shutil.copy(file, tmp_path / file.name)
        db = f"sqlite:///{tmp_path / file.name}"
    elif case.kind == SEQUENCES:
        shutil.copy(file, workspace / "sequences" / file.name)
    elif case.kind == TEMPLATES:
        shutil.copy(file, workspace / "templates" / file.name)
        (workspace / "sequences" / "sends-broken.yaml").write_text(f"name: sends-broken\nsteps:\n  - id: intro\n    template: {file.stem}\n")
    elif case.kind == LEADS:
        csv = str(file)
    return Setup(workspace, db, csv)


class Hung(BaseException):
    """A command still going after SECONDS: it started on broken input."""


@contextmanager
def _contained() -> Iterator[None]:
    """A command in this process: its logging set-up, signal handlers and time are taken back after it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def hung(_number: int, _frame: FrameType | None) -> None:
        raise Hung(f"still running after {SECONDS} s")

    previous_alarm = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        for number, handler in saved.items():
            signal.signal(number, handler)
        root.handlers[:] = handlers
        root.setLevel(level)


def _invoke(setup: Setup, args: list[str]) -> Result:
    env = {"OUTREACH_WORKSPACE": str(setup.workspace), "COLUMNS": "200", "OUTREACH_DATABASE_URL": setup.db}
    with _contained():
        return CliRunner(env=env).invoke(app, [setup.csv if arg == CSV else arg for arg in args])


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.name)
def test_no_command_takes_broken_input_with_a_traceback(case: Case, seeded_once: tuple[Path, str], tmp_path: Path) -> None:
    _, good_db = seeded_once
    setup = _apply(case, tmp_path, good_db)
    before = snapshot(good_db)
    ran, wrong = 0, []
    for command, (args, reads) in COMMAND_LINES.items():
        if case.kind not in reads:
            continue
        ran += 1
        result = _invoke(setup, [*command, *args])
        shown = f"outreach {' '.join(command)}: exit {result.exit_code}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            wrong.append(f"{shown}, raised {result.exception!r}")
        elif "Traceback" in result.output:
            wrong.append(f"{shown}, printed a traceback:\n{result.output}")
        elif result.exit_code == 0:
            wrong.append(f"{shown}, took the broken input:\n{result.output}")
    assert ran, f"no command reads {case.kind}"
    assert not wrong, "\n".join(wrong)
    assert snapshot(good_db) == before
