"""`outreach check`: the health check."""

from __future__ import annotations

import typer

from outreach.cli._common import WorkspaceOpt, database, err, open_app, out, reported
from outreach.config import _hide, load_settings
from outreach.db.session import current_revision, head_revision, make_engine


@reported
def check(workspace: WorkspaceOpt = None) -> None:
    """Health check: the workspace file, the database and its schema, the sequences. Exit 0 when all is well."""
    settings = load_settings(workspace)
    engine = make_engine(settings.database_url)
    try:
        with database(settings):
            current, head = current_revision(engine), head_revision(engine)
    finally:
        engine.dispose()
    out.print(f"workspace  {settings.root} ({len(settings.workspace.mailboxes)} mailboxes, {len(settings.workspace.team)} people)")
    out.print(f"database   {_hide(settings.database_url)}")
    out.print(f"schema     {current or 'empty'} (newest {head})")
    if current != head:
        err.print("the schema is behind; run `outreach db upgrade`")
        raise typer.Exit(1)
    with open_app(workspace) as application:
        found, problems = application.lint()
    out.print(f"sequences  {len(found)} ok, {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(2)
