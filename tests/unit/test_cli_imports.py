"""The command line imports one way: the command modules use outreach/cli/_common.py, the package
puts them together, and nothing below the command line imports it. Read from the source (every
import, those inside functions too), so a cycle cannot hide behind a call-time import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "outreach" / "cli"


def imported(path: Path) -> set[str]:
    """The modules a file imports, absolute, each with its parents (a.b.c also gives a.b and a)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return names


def test_the_shared_module_imports_no_command() -> None:
    assert not {name for name in imported(CLI / "_common.py") if name.startswith("outreach.cli")}


def test_a_command_module_imports_only_the_shared_module_of_the_command_line() -> None:
    for path in CLI.glob("*.py"):
        if path.name in {"__init__.py", "__main__.py", "_common.py"}:
            continue
        from_cli = {name for name in imported(path) if name.startswith("outreach.cli.")}
        assert from_cli and all(name.startswith("outreach.cli._common") for name in from_cli), path.name


def test_nothing_below_the_command_line_imports_it() -> None:
    below = [path for folder in ("outreach", "workers") for path in (ROOT / folder).rglob("*.py") if CLI not in path.parents]
    assert below
    assert [path.relative_to(ROOT) for path in below if "outreach.cli" in imported(path)] == []
