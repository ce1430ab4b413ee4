"""Every broken file gets a located error, a non-zero exit, and leaves the database as it was."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run, snapshot
from tests.conftest import DATA, ROOT

BROKEN = DATA / "broken"


SEQUENCE_CASES = [
    ("bad_yaml.yaml", r"bad_yaml\.yaml:5:\d+: this is not valid YAML"),
    ("unknown_field.yaml", r"unknown_field\.yaml:4:5: steps\[0\]\.tempalte: unknown field 'tempalte'; did you mean 'template'\?"),
    ("bad_delay.yaml", r"bad_delay\.yaml:6:12: steps\[1\]\.after: '2-3 dayz': unknown unit 'dayz'"),
    ("duplicate_step.yaml", r"duplicate_step\.yaml:\d+:\d+: .*step id 'intro' is used twice"),
    ("missing_template.yaml", r"missing_template\.yaml:4:15: template 'no_such_template': .*does not exist; create .*no_such_template\.j2"),
    ("bad_timezone.yaml", r"bad_timezone\.yaml:2:11: timezone: .*'Mars/Olympus_Mons' is not a time zone"),
    ("bad_holidays.yaml", r"bad_holidays\.yaml:2:11: holidays: .*'XX' is not a supported holiday calendar"),
    ("bad_window.yaml", r"bad_window\.yaml:2:\d+: window\.hours: .*must end after it starts"),
    ("duplicate_key.yaml", r"duplicate_key\.yaml:5:5: key 'template' appears twice \(first on line 4\)"),
    ("unknown_then.yaml", r"unknown_then\.yaml:8:9: no sequence named 'nowhere'"),
    ("task_undefined.yaml", r"task_undefined\.yaml:9:13: .*nickname.*default"),
    ("after_and_at.yaml", r"after_and_at\.yaml:5:\d+: steps\[1\]: a step has 'after' \(from the previous step\) or 'at'"),
    ("both_kinds.yaml", r"both_kinds\.yaml:3:\d+: steps\[0\]: a step has either 'template' \(an email\) or 'task'"),
    # hostile: input built to exhaust memory, recursion or the calendar
    ("deep_nesting.yaml", r"deep_nesting\.yaml:2:71: more than 64 levels of nesting; .*flatten"),
    ("deep_mapping.yaml", r"deep_mapping\.yaml:5:\d+: more than 64 levels of nesting"),
    ("huge_integer.yaml", r"huge_integer\.yaml:6:12: this value cannot be read \(.*4300 digits.*\); put it in quotes"),
    ("impossible_date.yaml", r"impossible_date\.yaml:2:14: this value cannot be read \(month must be in 1\.\.12\); put it in quotes"),
    ("huge_wait.yaml", r"huge_wait\.yaml:6:12: steps\[1\]\.after: '1000000 weeks' is longer than the longest wait, 5 years \(260 weeks\)"),
    ("huge_number.yaml", r"huge_number\.yaml:6:12: steps\[1\]\.after: '10{26} days' is longer than the longest wait, 5 years \(1826 days\)"),
    ("business_hours_overflow.yaml", r"business_hours_overflow\.yaml:6:12: steps\[1\]\.after: '99999999 business hours' is longer than the longest wait, 5 years \(43830 business hours\)"),
    ("business_hours_narrow_window.yaml", r"business_hours_narrow_window\.yaml:7:12: steps\[1\]\.after: 1000 business hours in the window mon 09:00-09:01 takes up to 420000 days, longer than the longest wait, 5 years; shorten it or widen the window"),
    ("tiny_wait.yaml", r"tiny_wait\.yaml:6:12: steps\[1\]\.after: '0\.0000001 minutes' is shorter than the shortest wait, 0\.5 minutes"),
    ("zero_repeat.yaml", r"zero_repeat\.yaml:2:9: repeat\.every: 'every 0 minutes' is shorter than the shortest wait, 0\.5 minutes"),
    ("short_repeat.yaml", r"short_repeat\.yaml:2:9: repeat: every 1 week is shorter than one round of the steps \(up to 10 days\); repeat every 10 days or more"),
]


@pytest.mark.parametrize(("name", "expected"), SEQUENCE_CASES, ids=[c[0] for c in SEQUENCE_CASES])
def test_a_broken_sequence_is_located_and_changes_nothing(seeded: tuple[Path, str], name: str, expected: str) -> None:
    workspace, db = seeded
    shutil.copy(BROKEN / "sequences" / name, workspace / "sequences" / name)
    before = snapshot(db)
    lint = run(workspace, "sequences", "lint", db=db)
    assert lint.exit_code == 2, lint.output
    assert re.search(expected, lint.stderr), lint.stderr
    assert "Traceback" not in lint.output
    # anything that needs the sequences refuses to work on a broken set, and writes nothing
    enroll = run(workspace, "enroll", "bd-client-follow-up", "--lead", "ananya.rao@acme.example", db=db)
    assert enroll.exit_code == 2, enroll.output
    assert re.search(expected, enroll.stderr), enroll.stderr
    assert "Traceback" not in enroll.output
    assert snapshot(db) == before


def _use_template(workspace: Path, template: str) -> None:
    shutil.copy(BROKEN / "templates" / template, workspace / "templates" / template)
    stem = template.removesuffix(".j2")
    (workspace / "sequences" / "uses-broken.yaml").write_text(
        f"name: uses-broken\nsteps:\n  - id: intro\n    template: initial_outreach\n  - id: nudge\n    after: 2 days\n    template: {stem}\n"
    )


TEMPLATE_CASES = [
    ("syntax_error.j2", r"uses-broken\.yaml:7:15: template 'syntax_error': template syntax error: .*endblock.*\(.*syntax_error\.j2:6\)"),
    ("undefined_var.j2", r"undefined_var\.j2:3: .*'first_name'.*default.*\(rendering for a lead with only an email address\)"),
    ("missing_block.j2", r"uses-broken\.yaml:7:15: template 'missing_block': missing block\(s\) subject"),
    ("sandbox_escape.j2", r"sandbox_escape\.j2:3: .*"),
]


@pytest.mark.parametrize(("name", "expected"), TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
def test_a_broken_template_is_located_and_changes_nothing(seeded: tuple[Path, str], name: str, expected: str) -> None:
    workspace, db = seeded
    _use_template(workspace, name)
    before = snapshot(db)
    lint = run(workspace, "sequences", "lint", db=db)
    assert lint.exit_code == 2, lint.output
    assert re.search(expected, lint.stderr), lint.stderr
    assert "Traceback" not in lint.output
    assert snapshot(db) == before


CSV_CASES = [
    ("bad_address.csv", [r"bad_address\.csv:3: email 'bob@@example\.com' is not a valid address", r"bad_address\.csv:4: no email address"]),
    ("no_email_column.csv", [r"no_email_column\.csv:1: no email column found .*--map"]),
    ("duplicate.csv", [r"duplicate\.csv:3: jane@example\.com is already on line 2"]),
    ("bad_timezone.csv", [r"bad_timezone\.csv:2: 'Mars/Base' is not a time zone"]),
    ("unknown_owner.csv", [r"unknown_owner\.csv:2: owner 'nobody@appneural\.example' is not in the team"]),
    ("ragged.csv", [r"ragged\.csv:2: 4 values but the header has 2 columns"]),
    ("header_injection.csv", [r"header_injection\.csv:\d: column 'First Name' holds control characters"]),
    ("bad_country.csv", [r"bad_country\.csv:2: country 'Atlantis' is not known"]),
    ("empty.csv", [r"empty\.csv:1: the file is empty"]),
]


@pytest.mark.parametrize(("name", "expected"), CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_a_bad_csv_imports_nothing(seeded: tuple[Path, str], name: str, expected: list[str]) -> None:
    workspace, db = seeded
    before = snapshot(db)
    result = run(workspace, "leads", "import", str(BROKEN / "csv" / name), db=db)
    assert result.exit_code == 2, result.output
    for pattern in expected:
        assert re.search(pattern, result.stderr), result.stderr
    assert snapshot(db) == before


def test_good_rows_are_not_imported_when_one_row_is_bad(workspace: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    result = run(workspace, "leads", "import", str(BROKEN / "csv" / "bad_address.csv"), db=db)
    assert result.exit_code == 2
    assert "nothing was imported" in result.stderr
    assert not snapshot(db).get("lead")


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["enroll", "no-such-sequence", "--all"], r"no sequence 'no-such-sequence'; known: .*bd-client-follow-up", 3),
        (["enroll", "bd-client-follow-up"], r"name leads with --lead EMAIL, or use --all", 2),
        (["enroll", "bd-client-follow-up", "--lead", "not-an-address"], r"'not-an-address' is not an email address", 2),
        (["enroll", "bd-client-follow-up", "--lead", "stranger@example.com"], r"no lead stranger@example\.com; import it first", 3),
        (["pause", "--lead", "ananya.rao@acme.example", "--until", "next tuesday"], r"--until: 'next tuesday' is not a date; write YYYY-MM-DD", 2),
        (["resume", "--lead", "ananya.rao@acme.example"], r"nothing to resumed|already in that state", 4),
        (["preview", "bd-client-follow-up", "nope", "--lead", "ananya.rao@acme.example"], r"has no step 'nope'; its steps: intro", 3),
        (["preview", "bd-client-follow-up", "call", "--lead", "ananya.rao@acme.example"], r"is a phone task, not an email", 2),
        (["leads", "import", "examples/leads.csv", "--map", "nonsense"], r"--map: 'nonsense': write 'Column Name=field'", 2),
        (["leads", "import", "examples/leads.csv", "--map", "Email=mail_address"], r"'mail_address' is not a lead field", 2),
        (["leads", "import", "no/such/file.csv"], r"file\.csv: no such file", 2),
        (["status", "--frobnicate"], r"No such option|no such option", 2),
    ],
)
def test_bad_command_lines_explain_and_change_nothing(seeded: tuple[Path, str], args: list[str], expected: str, code: int) -> None:
    workspace, db = seeded
    before = snapshot(db)
    result = run(workspace, *args, db=db)
    assert result.exit_code == code, result.output
    assert re.search(expected, result.output, re.IGNORECASE), result.output
    assert snapshot(db) == before


def test_a_broken_workspace_file_is_located(workspace: Path) -> None:
    path = workspace / "outreach.yaml"
    path.write_text(path.read_text().replace("    daily_cap:", "    daly_cap:", 1))
    result = run(workspace, "sequences", "lint")
    assert result.exit_code == 2
    assert re.search(r"outreach\.yaml:\d+:\d+: mailboxes\[0\]\.daly_cap: unknown field 'daly_cap'; did you mean 'daily_cap'\?", result.stderr), result.stderr


WORKER_ENTRY_CASES = [
    ("missing", {}, r"/missing: no workspace here: no such folder; pass --workspace DIR \(or set OUTREACH_WORKSPACE\)"),
    ("misspelt", {}, r"outreach\.yaml:\d+:\d+: mailboxes\[0\]\.daly_cap: unknown field 'daly_cap'; did you mean 'daily_cap'\?"),
    ("broker", {"OUTREACH_BROKER_URL": "kafka://127.0.0.1:9092"}, r"OUTREACH_BROKER_URL: unknown broker 'kafka'; use stub://"),
]


@pytest.mark.parametrize(("case", "env", "expected"), WORKER_ENTRY_CASES, ids=[c[0] for c in WORKER_ENTRY_CASES])
def test_the_workers_refuse_a_broken_workspace_with_its_place_and_no_traceback(workspace: Path, case: str, env: dict[str, str], expected: str) -> None:
    """`dramatiq workers.entry`, as the README starts the workers: the worker process says what is
    wrong where, and dramatiq stops with its exit code, before any message is taken."""
    if case == "missing":
        workspace = workspace / "missing"
    elif case == "misspelt":
        path = workspace / "outreach.yaml"
        path.write_text(path.read_text().replace("    daily_cap:", "    daly_cap:", 1))
    environ = {name: value for name, value in os.environ.items() if not name.startswith("OUTREACH_")}
    environ.update(OUTREACH_WORKSPACE=str(workspace), PYTHONPATH=str(ROOT), **env)
    done = subprocess.run(
        [sys.executable, "-m", "dramatiq", "workers.entry", "--processes", "1", "--threads", "1"],
        env=environ, cwd=workspace.parent, capture_output=True, text=True, timeout=120, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert re.search(expected, output), output
    assert "Traceback" not in output
