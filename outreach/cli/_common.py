"""What every `outreach` command shares: the consoles, the option types, the application a command
works on, how an error reaches the person at the terminal, and how a long-running command stops.

Imports nothing from the command modules; they import this.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from outreach import logs, runner
from outreach.config import Settings, load_settings
from outreach.db.session import database_errors
from outreach.errors import InputError, OutreachError
from outreach.service import App

out = Console(highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or captured: wide enough for a timeline
err = Console(stderr=True, highlight=False)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="OUTREACH_WORKSPACE", help="Folder holding outreach.yaml (default: the current folder)."),
]
SequenceOpt = Annotated[str | None, typer.Option("--sequence", "-s", help="Only this sequence (default: all the lead's).")]


# ---- the application a command works on -----------------------------------------------------------


@contextmanager
def open_app(workspace: Path | None, *, migrate: bool | None = None) -> Iterator[App]:
    """The workspace's application, closed when the command is done with it."""
    settings = load_settings(workspace)
    with database(settings):
        application = App(settings, migrate=migrate)
        try:
            yield application
        finally:
            application.close()


def database(settings: Settings) -> AbstractContextManager[None]:
    """Where a command meets its database: an unreachable or unreadable one is one line, not a traceback."""
    return database_errors(settings.database_url, settings.database_setting)


# ---- errors ------------------------------------------------------------------------------------------


def fail(exc: OutreachError) -> NoReturn:
    """The error as the person at the terminal reads it: each problem at its place, then the exit code
    of its kind (see the `outreach` module's docstring)."""
    if isinstance(exc, InputError):
        if exc.summary:
            err.print(f"[bold red]error:[/] {exc.summary}")
        for problem in exc.problems:
            err.print(f"[red]{problem.location}[/]: {problem.message}", soft_wrap=True)
        if not exc.summary and not exc.problems:
            err.print(f"[bold red]error:[/] {exc}")
    else:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(exc.exit_code)


P = ParamSpec("P")


def reported(command: Callable[P, None]) -> Callable[P, None]:
    """A command whose errors (bad input, not found, a database that cannot be used ...) end it through
    `fail`, never as a traceback. typer reads the options from the wrapped function's signature."""

    @functools.wraps(command)
    def translated(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except OutreachError as exc:
            fail(exc)

    return translated


# ---- long-running commands -----------------------------------------------------------------------

_log_format = "text"


def set_log_format(value: str) -> None:
    """--log-format, given before the command's name."""
    global _log_format
    _log_format = value


def service_logging() -> None:
    """One line a round at INFO, as text or JSON, for a command that runs until stopped."""
    logs.setup(_log_format)


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and Ctrl-C set: the work under way ends, then the command stops in order.
    From the main thread, once the command is ready to start."""
    stop = threading.Event()
    runner.stop_on_signals(stop)
    return stop


def wait_for_stop(stop: threading.Event) -> None:
    """Until SIGTERM or Ctrl-C; a second at a time, so that the signal handler runs."""
    while not stop.wait(1):
        pass


# ---- times -------------------------------------------------------------------------------------------


def local(when: dt.datetime | None, tz: str | None = None) -> str:
    """An instant as a person reads it, in a zone (default: the instant's own); '-' for none."""
    if when is None:
        return "-"
    shown = when.astimezone(ZoneInfo(tz)) if tz else when
    return shown.strftime("%a %d %b %Y %H:%M %Z")
