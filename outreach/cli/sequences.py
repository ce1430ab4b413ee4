"""`outreach sequences` (lint, list) and `outreach preview`: the sequence files and what a step sends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from outreach.cli._common import WorkspaceOpt, err, open_app, out, reported

sequences_app = typer.Typer(help="Check and list sequences (sequences/*.yaml).", no_args_is_help=True)


@sequences_app.command("lint")
@reported
def sequences_lint(
    files: Annotated[list[Path] | None, typer.Argument(help="Files to check (default: every file in the sequences folder).", dir_okay=False)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Check sequence files: the schema, references, and every template rendered for sample leads.

    Example: outreach sequences lint sequences/bd-client-follow-up.yaml
    """
    with open_app(workspace) as application:
        found, problems = application.lint([f.resolve() for f in files] if files else None)
    for problem in problems:
        err.print(f"[red]{problem.location}[/]: {problem.message}", soft_wrap=True)
    if problems:
        err.print(f"[bold red]{len(problems)} problem(s)[/]")
        raise typer.Exit(2)
    out.print(f"[green]ok[/]: {len(found)} sequence(s), every step renders: {', '.join(sorted(found))}")


@sequences_app.command("list")
@reported
def sequences_list(workspace: WorkspaceOpt = None) -> None:
    """List sequences with their steps."""
    with open_app(workspace) as application:
        table = Table("sequence", "steps", "window", "after the steps")
        for name, loaded in sorted(application.sequences().items()):
            seq = loaded.definition
            steps = ", ".join(f"{s.id}" + (f" (+{s.after})" if s.after else "") for s in seq.steps)
            tail = []
            if seq.repeat:
                tail.append(f"repeat every {seq.repeat.every}")
            if seq.escalate:
                tail.append(f"escalate +{seq.escalate.after}")
            if seq.dormant:
                tail.append(f"dormant +{seq.dormant.after}" + (f", revisit {seq.dormant.revisit} -> {seq.dormant.then or name}" if seq.dormant.revisit else ""))
            table.add_row(name, steps, seq.window.build().describe(), "; ".join(tail) or "end")
        out.print(table)


@reported
def preview(
    sequence: Annotated[str, typer.Argument(help="Sequence name.")],
    step: Annotated[str, typer.Argument(help="Step id.")],
    lead: Annotated[str, typer.Option("--lead", "-l", help="The lead's email address.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Render exactly what a step would send to a lead.

    Example: outreach preview bd-client-follow-up intro --lead jane@example.com
    """
    with open_app(workspace) as application:
        shown = application.preview(sequence, step, lead)
    out.print(f"From:    {shown.sender}")
    out.print(f"To:      {shown.recipient}")
    out.print(f"Subject: {shown.subject}")
    out.print(f"When:    {shown.local:%a %d %b %Y %H:%M %Z} (thread #{shown.thread})")
    out.print("")
    out.print(shown.rendered.text, markup=False)
    if shown.rendered.html:
        out.print(f"[dim]-- an HTML alternative of {len(shown.rendered.html)} characters is attached --[/]")
