"""Templates that would crash, exhaust memory or hang the renderer get a located error from lint,
quickly, and leave the database as it was."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run, snapshot
from tests.conftest import DATA

BROKEN = DATA / "broken" / "templates"


def _use_template(workspace: Path, template: str, *partials: str) -> None:
    for name in (template, *partials):
        shutil.copy(BROKEN / name, workspace / "templates" / name)
    stem = template.removesuffix(".j2")
    (workspace / "sequences" / "uses-hostile.yaml").write_text(
        f"name: uses-hostile\nsteps:\n  - id: intro\n    template: initial_outreach\n  - id: nudge\n    after: 2 days\n    template: {stem}\n"
    )


CASES = [
    (
        "self_include.j2",
        (),
        r"uses-hostile\.yaml:7:15: template 'self_include': 'self_include\.j2' includes itself \(self_include\.j2 -> self_include\.j2\); .* \(.*self_include\.j2:4\)",
    ),
    (
        "mutual_include.j2",
        ("_mutual_partner.j2",),
        (
            r"uses-hostile\.yaml:7:15: template 'mutual_include': 'mutual_include\.j2' includes itself "
            r"\(mutual_include\.j2 -> _mutual_partner\.j2 -> mutual_include\.j2\); .* \(.*mutual_include\.j2:4\)"
        ),
    ),
    (
        "not_utf8.j2",
        (),
        r"uses-hostile\.yaml:7:15: template 'not_utf8': not_utf8\.j2 is not UTF-8 text \(byte 0xe9 at offset 22\); save it as UTF-8 \(.*not_utf8\.j2:1\)",
    ),
    ("huge_string.j2", (), r"huge_string\.j2:4: .*100000000000 characters.*1000000.*\(rendering for "),
    ("nested_loops.j2", (), r"nested_loops\.j2:4: .*more than 100000 loop turns.*\(rendering for "),
    ("huge_output.j2", (), r"huge_output\.j2:\d+: .*renders more than 1000000 characters.*\(rendering for "),
    ("long_subject.j2", (), r"long_subject\.j2:1: the subject renders to \d+ characters; .*255.*\(rendering for "),
]


@pytest.mark.parametrize(("name", "partials", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_template_is_located_quickly_and_changes_nothing(seeded: tuple[Path, str], name: str, partials: tuple[str, ...], expected: str) -> None:
    workspace, db = seeded
    _use_template(workspace, name, *partials)
    before = snapshot(db)
    started = time.monotonic()
    lint = run(workspace, "sequences", "lint", db=db)
    took = time.monotonic() - started
    assert lint.exit_code == 2, lint.output
    assert re.search(expected, lint.stderr), lint.stderr
    assert "Traceback" not in lint.output
    assert took < 5, f"lint took {took:.1f} s"
    assert snapshot(db) == before
