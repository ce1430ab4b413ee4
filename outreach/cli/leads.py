"""`outreach leads import` and a lead's enrollments: enroll, unenroll, pause, resume."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from outreach.cli._common import (
    SequenceOpt,
    WorkspaceOpt,
    local,
    open_app,
    out,
    reported,
)
from outreach.clock import UTC, SystemClock
from outreach.errors import InputError, Location, Problem
from outreach.leads import ImportResult
from outreach.sequences import engine as eng
from outreach.service import App

leads_app = typer.Typer(help="Import leads.", no_args_is_help=True)

LeadOpt = Annotated[list[str], typer.Option("--lead", "-l", help="A lead's email address (repeatable).")]


@leads_app.command("import")
@reported
def leads_import(
    file: Annotated[Path, typer.Argument(help="A CSV export (HubSpot, Salesforce, Pipedrive, Zoho, or your own).", dir_okay=False)],
    map_: Annotated[list[str], typer.Option("--map", "-m", help="'Column Name=field' to map a column (repeatable).")] = [],  # noqa: B006
    owner: Annotated[str | None, typer.Option("--owner", help="Owner (team email) for rows without one.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import or update leads; the address is the key. Any bad row: nothing is imported.

    Example: outreach leads import contacts.csv --map "E-mail=email" --owner priya@appneural.example
    """
    overrides: dict[str, str] = {}
    for item in map_:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise InputError(Problem(Location("--map"), f"{item!r}: write 'Column Name=field', e.g. --map 'E-mail=email'"))
        overrides[source.strip()] = target.strip()
    with open_app(workspace) as application:
        result = _import_with_progress(application, file, overrides, owner)
    out.print(f"[green]imported[/] {result.total} lead(s) from {file}: {result.created} new, {result.updated} updated, {result.unchanged} unchanged")


def _import_with_progress(application: App, file: Path, overrides: dict[str, str], owner: str | None) -> ImportResult:
    with Progress(TextColumn("importing {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out, transient=False) as progress:
        task = progress.add_task(file.name, total=None)
        return application.import_leads(
            file,
            overrides=overrides,
            default_owner=owner,
            on_parsed=lambda n: progress.update(task, total=n),
            progress=lambda n: progress.advance(task, n),
        )


# ---- enrollments -----------------------------------------------------------------------------------


@reported
def enroll(
    sequence: Annotated[str, typer.Argument(help="Sequence name.")],
    lead: LeadOpt = [],  # noqa: B006
    all_leads: Annotated[bool, typer.Option("--all", help="Every imported lead.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start a sequence for leads. Suppressed and already-enrolled leads are skipped.

    Example: outreach enroll bd-client-follow-up --lead jane@example.com
    """
    if not lead and not all_leads:
        raise InputError(Problem(Location("command line"), "name leads with --lead EMAIL, or use --all"))
    with open_app(workspace) as application:
        result = application.enroll(sequence, lead, all_leads=all_leads)
    out.print(f"[green]enrolled[/] {len(result.enrolled)} lead(s) in {sequence}")
    for email, why in result.skipped:
        out.print(f"  skipped {email}: {why}")


def _change(workspace: Path | None, lead: str, sequence: str | None, event: Callable[[dt.datetime], eng.Event], kind: str, verb: str) -> None:
    with open_app(workspace) as application:
        changed = application.apply(lead, sequence, event, kind)
    for enrollment in changed:
        out.print(f"{verb} {enrollment.lead.email} in {enrollment.sequence_name} (now {enrollment.phase}; next action {local(enrollment.next_action_at)})")


@reported
def unenroll(lead: Annotated[str, typer.Option("--lead", "-l")], sequence: SequenceOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Stop a lead's sequence for good."""
    _change(workspace, lead, sequence, lambda at: eng.Unenrolled(at=at), "unenrolled", "unenrolled")


@reported
def pause(
    lead: Annotated[str, typer.Option("--lead", "-l")],
    until: Annotated[str | None, typer.Option("--until", help="Date (YYYY-MM-DD) to resume by itself; default: until `resume`.")] = None,
    sequence: SequenceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Pause a lead's sequence, until a date or until resumed."""
    end = _pause_end(until, SystemClock().now().date()) if until is not None else None
    _change(workspace, lead, sequence, lambda at: eng.PauseRequested(at=at, until=end), "paused", "paused")


PAUSE_YEARS = 5


def _pause_end(until: str, today: dt.date) -> dt.datetime:
    """--until as the instant a pause ends: midnight UTC of a day from today to PAUSE_YEARS ahead."""
    where = Location("--until")
    try:
        day = dt.date.fromisoformat(until)
    except ValueError:
        raise InputError(Problem(where, f"{until!r} is not a date; write YYYY-MM-DD")) from None
    try:
        last = today.replace(year=today.year + PAUSE_YEARS)
    except ValueError:  # from 29 February
        last = today.replace(year=today.year + PAUSE_YEARS, day=28)
    if day < today:
        raise InputError(Problem(where, f"{until!r} is in the past; give today or a later date"))
    if day > last:
        raise InputError(Problem(where, f"{until!r} is more than {PAUSE_YEARS} years ahead; pause until a date up to {last}, or without --until until `outreach resume`"))
    return dt.datetime.combine(day, dt.time(0), tzinfo=UTC)


@reported
def resume(lead: Annotated[str, typer.Option("--lead", "-l")], sequence: SequenceOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Resume a paused sequence."""
    _change(workspace, lead, sequence, lambda at: eng.ResumeRequested(at=at), "resumed", "resumed")
