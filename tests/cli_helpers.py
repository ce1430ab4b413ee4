"""Run the CLI in-process, and take snapshots of the database to prove nothing changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner, Result

from outreach.cli import app
from outreach.db.session import make_engine


def run(workspace: Path, *args: str, db: str | None = None) -> Result:
    env = {"OUTREACH_WORKSPACE": str(workspace), "COLUMNS": "200"}
    if db:
        env["OUTREACH_DATABASE_URL"] = db
    return CliRunner(env=env).invoke(app, list(args))


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (empty when the database does not exist yet)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return {}
    engine = make_engine(url)
    try:
        tables = sorted(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{t}"'))), key=repr) for t in tables}
    finally:
        engine.dispose()


__all__ = ["run", "snapshot", "create_engine"]


def seed(workspace: Path, db: str) -> tuple[Path, str]:
    """The workspace's database upgraded, examples/leads.csv imported and enrolled in bd-client-follow-up."""
    assert run(workspace, "db", "upgrade", db=db).exit_code == 0
    assert run(workspace, "leads", "import", "examples/leads.csv", db=db).exit_code == 0
    assert run(workspace, "enroll", "bd-client-follow-up", "--all", db=db).exit_code == 0
    return workspace, db
