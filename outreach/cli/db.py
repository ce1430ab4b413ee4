"""`outreach db`: the database schema."""

from __future__ import annotations

import typer

from outreach.cli._common import WorkspaceOpt, database, out, reported
from outreach.config import load_settings
from outreach.db.session import current_revision, make_engine, upgrade

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)


@db_app.command("upgrade")
@reported
def db_upgrade(workspace: WorkspaceOpt = None) -> None:
    """Create or migrate the database schema to the newest version."""
    settings = load_settings(workspace)
    engine = make_engine(settings.database_url)
    try:
        with database(settings):
            before = current_revision(engine)
            upgrade(engine)
            out.print(f"database at revision {current_revision(engine)} (was {before or 'empty'})")
    finally:
        engine.dispose()
