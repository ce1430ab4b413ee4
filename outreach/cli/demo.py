"""`outreach demo`: the pipeline played on this machine (the story itself is outreach.demo)."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach.cli._common import WorkspaceOpt, err, fail, out
from outreach.errors import OutreachError
from workers.inprocess import InProcess


def demo(
    workspace: WorkspaceOpt = None,
    seed: Annotated[int, typer.Option(help="The same seed tells the same story: the random points in ranges and when people answer.")] = 7,
    days: Annotated[int, typer.Option(min=1, max=365, help="Simulated days to play.")] = 60,
) -> None:
    """Play 60 days of the real pipeline in under a minute: scheduler, workers, SMTP and IMAP on this
    machine, with simulated leads who reply, go on leave, bounce, opt out or stay silent.

    Everything is kept in var/demo (wiped at the start): the SQLite database, the maildirs, and the
    workspace file pointing at the demo's mail server.

    Example: outreach demo --seed 11
    """
    try:
        from outreach.demo import (  # on use: the demo's mail server takes a while to load
            ConsoleWatcher,
            print_summary,
            run_demo,
        )

        with ConsoleWatcher(out) as watcher:
            result = run_demo(workspace, senders=InProcess, seed=seed, days=days, watcher=watcher)
    except OutreachError as exc:
        fail(exc)
    print_summary(out, result)
    if not result.finished:
        err.print("[bold red]the demo stopped before its last day[/]")
        raise typer.Exit(1)
