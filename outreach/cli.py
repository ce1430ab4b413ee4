"""The `outreach` command.

Exit codes: 0 done; 1 failed; 2 bad input (a file, an argument) and nothing was changed;
3 not found; 4 conflicts with the current state (e.g. already paused).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from outreach.cli_crm import register as _register_crm
from outreach.clock import UTC, SystemClock
from outreach.config import Settings, load_settings
from outreach.db.session import current_revision, database_errors, head_revision, make_engine, upgrade
from outreach.errors import ConfigError, InputError, Location, NotFound, OutreachError, Problem
from outreach.sequences import engine as eng
from outreach.service import App, PlannedItem

app = typer.Typer(
    help="Email follow-up sequences that stop the moment a person answers.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
sequences_app = typer.Typer(help="Check and list sequences (sequences/*.yaml).", no_args_is_help=True)
leads_app = typer.Typer(help="Import leads.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(sequences_app, name="sequences")
app.add_typer(leads_app, name="leads")
app.add_typer(db_app, name="db")

out = Console(highlight=False)
if not out.is_terminal and "COLUMNS" not in __import__("os").environ:
    out.width = 160  # piped or captured: wide enough for a timeline
err = Console(stderr=True, highlight=False)

_log_format = "text"


@app.callback()
def _options(
    log_format: Annotated[str, typer.Option("--log-format", envvar="OUTREACH_LOG_FORMAT", help="How the long-running commands (run, scheduler, poll, serve) log: text or json.")] = "text",
) -> None:
    global _log_format
    _log_format = log_format


def _service_logging() -> None:
    """One line a round at INFO, as text or JSON, for a command that runs until stopped."""
    from outreach.logs import setup

    setup(_log_format)


MetricsOpt = Annotated[Optional[str], typer.Option("--metrics", envvar="OUTREACH_METRICS", help="HOST:PORT to serve Prometheus metrics on (e.g. 127.0.0.1:9464).")]


def _serve_metrics(listen: str | None, application: App | None = None) -> None:
    if not listen:
        return
    from outreach import health, metrics

    def read() -> object:
        with application.sessions() as session:  # type: ignore[union-attr]
            return health.outbox(session, application.clock.now())  # type: ignore[union-attr]

    try:
        port = metrics.serve(listen, read if application is not None else None)
    except OSError as exc:
        raise ConfigError(Problem(Location("--metrics"), f"cannot listen on {listen}: {exc.strerror or exc}; choose another port")) from exc
    logging.getLogger("outreach").info("metrics on port %d", port)


WorkspaceOpt = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", envvar="OUTREACH_WORKSPACE", help="Folder holding outreach.yaml (default: the current folder)."),
]
LeadOpt = Annotated[list[str], typer.Option("--lead", "-l", help="A lead's email address (repeatable).")]


@contextmanager
def _app(workspace: Path | None, *, migrate: bool | None = None) -> Iterator[App]:
    settings = load_settings(workspace)
    with _database(settings):
        application = App(settings, migrate=migrate)
        try:
            yield application
        finally:
            application.close()


def _database(settings: Settings) -> AbstractContextManager[None]:
    """Where a command meets its database: an unreachable or unreadable one is one line, not a traceback."""
    return database_errors(settings.database_url, settings.database_setting)


def _fail(exc: OutreachError) -> None:
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


def _local(when: dt.datetime | None, tz: str | None = None) -> str:
    if when is None:
        return "-"
    from zoneinfo import ZoneInfo

    local = when.astimezone(ZoneInfo(tz)) if tz else when
    return local.strftime("%a %d %b %Y %H:%M %Z")


# ---- db -----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(workspace: WorkspaceOpt = None) -> None:
    """Create or migrate the database schema to the newest version."""
    try:
        settings = load_settings(workspace)
        engine = make_engine(settings.database_url)
        try:
            with _database(settings):
                before = current_revision(engine)
                upgrade(engine)
                out.print(f"database at revision {current_revision(engine)} (was {before or 'empty'})")
        finally:
            engine.dispose()
    except OutreachError as exc:
        _fail(exc)


# ---- sequences ------------------------------------------------------------------------------------


@sequences_app.command("lint")
def sequences_lint(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Files to check (default: every file in the sequences folder).", dir_okay=False)] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Check sequence files: the schema, references, and every template rendered for sample leads.

    Example: outreach sequences lint sequences/bd-client-follow-up.yaml
    """
    try:
        with _app(workspace) as application:
            found, problems = application.lint([f.resolve() for f in files] if files else None)
    except OutreachError as exc:
        _fail(exc)
        return
    for problem in problems:
        err.print(f"[red]{problem.location}[/]: {problem.message}", soft_wrap=True)
    if problems:
        err.print(f"[bold red]{len(problems)} problem(s)[/]")
        raise typer.Exit(2)
    out.print(f"[green]ok[/]: {len(found)} sequence(s), every step renders: {', '.join(sorted(found))}")


@sequences_app.command("list")
def sequences_list(workspace: WorkspaceOpt = None) -> None:
    """List sequences with their steps."""
    try:
        with _app(workspace) as application:
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
    except OutreachError as exc:
        _fail(exc)


# ---- preview ----------------------------------------------------------------------------------------


@app.command()
def preview(
    sequence: Annotated[str, typer.Argument(help="Sequence name.")],
    step: Annotated[str, typer.Argument(help="Step id.")],
    lead: Annotated[str, typer.Option("--lead", "-l", help="The lead's email address.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Render exactly what a step would send to a lead.

    Example: outreach preview bd-client-follow-up intro --lead jane@example.com
    """
    try:
        with _app(workspace) as application:
            shown = application.preview(sequence, step, lead)
    except OutreachError as exc:
        _fail(exc)
        return
    out.print(f"From:    {shown.sender}")
    out.print(f"To:      {shown.recipient}")
    out.print(f"Subject: {shown.subject}")
    out.print(f"When:    {shown.local:%a %d %b %Y %H:%M %Z} (thread #{shown.thread})")
    out.print("")
    out.print(shown.rendered.text, markup=False)
    if shown.rendered.html:
        out.print(f"[dim]-- an HTML alternative of {len(shown.rendered.html)} characters is attached --[/]")


# ---- leads -------------------------------------------------------------------------------------------


@leads_app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(help="A CSV export (HubSpot, Salesforce, Pipedrive, Zoho, or your own).", dir_okay=False)],
    map_: Annotated[list[str], typer.Option("--map", "-m", help="'Column Name=field' to map a column (repeatable).")] = [],  # noqa: B006
    owner: Annotated[Optional[str], typer.Option("--owner", help="Owner (team email) for rows without one.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import or update leads; the address is the key. Any bad row: nothing is imported.

    Example: outreach leads import contacts.csv --map "E-mail=email" --owner priya@appneural.example
    """
    overrides: dict[str, str] = {}
    for item in map_:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            _fail(InputError(Problem(Location("--map"), f"{item!r}: write 'Column Name=field', e.g. --map 'E-mail=email'")))
        overrides[source.strip()] = target.strip()
    try:
        with _app(workspace) as application:
            result = _import_with_progress(application, file, overrides, owner)
    except OutreachError as exc:
        _fail(exc)
        return
    out.print(f"[green]imported[/] {result.total} lead(s) from {file}: {result.created} new, {result.updated} updated, {result.unchanged} unchanged")


def _import_with_progress(application: App, file: Path, overrides: dict[str, str], owner: str | None):  # type: ignore[no-untyped-def]
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


@app.command()
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
        _fail(InputError(Problem(Location("command line"), "name leads with --lead EMAIL, or use --all")))
    try:
        with _app(workspace) as application:
            result = application.enroll(sequence, lead, all_leads=all_leads)
    except OutreachError as exc:
        _fail(exc)
        return
    out.print(f"[green]enrolled[/] {len(result.enrolled)} lead(s) in {sequence}")
    for email, why in result.skipped:
        out.print(f"  skipped {email}: {why}")


def _change(workspace: Path | None, lead: str, sequence: str | None, event: object, kind: str, verb: str) -> None:
    try:
        with _app(workspace) as application:
            changed = application.apply(lead, sequence, event, kind)  # type: ignore[arg-type]
    except OutreachError as exc:
        _fail(exc)
        return
    for enrollment in changed:
        out.print(f"{verb} {enrollment.lead.email} in {enrollment.sequence_name} (now {enrollment.phase}; next action {_local(enrollment.next_action_at)})")


SequenceOpt = Annotated[Optional[str], typer.Option("--sequence", "-s", help="Only this sequence (default: all the lead's).")]


@app.command()
def unenroll(lead: Annotated[str, typer.Option("--lead", "-l")], sequence: SequenceOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Stop a lead's sequence for good."""
    _change(workspace, lead, sequence, lambda at: eng.Unenrolled(at=at), "unenrolled", "unenrolled")


@app.command()
def pause(
    lead: Annotated[str, typer.Option("--lead", "-l")],
    until: Annotated[Optional[str], typer.Option("--until", help="Date (YYYY-MM-DD) to resume by itself; default: until `resume`.")] = None,
    sequence: SequenceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Pause a lead's sequence, until a date or until resumed."""
    end: dt.datetime | None = None
    if until is not None:
        try:
            end = _pause_end(until, SystemClock().now().date())
        except InputError as exc:
            _fail(exc)
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


@app.command()
def resume(lead: Annotated[str, typer.Option("--lead", "-l")], sequence: SequenceOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Resume a paused sequence."""
    _change(workspace, lead, sequence, lambda at: eng.ResumeRequested(at=at), "resumed", "resumed")


@app.command()
def status(
    lead: Annotated[Optional[str], typer.Option("--lead", "-l", help="One lead: its enrollments and planned timeline.")] = None,
    sequence: SequenceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Where everything stands: per sequence, or per lead with the planned timeline."""
    try:
        with _app(workspace) as application, application.sessions() as session:
            if lead is None and sequence is None:
                table = Table("sequence", "phase", "enrollments")
                for name, phase, count in application.summary(session):
                    table.add_row(name, phase, str(count))
                out.print(table)
                print_outbox(application, session)
                print_bounces(application, session)
                from outreach.scheduler import dead_letters

                dead = dead_letters(session)
                if dead:
                    out.print(f"[bold red]{len(dead)} message(s) failed[/] (dead letters):")
                    for message in dead[:50]:
                        out.print(f"  #{message.id} {message.recipient} step {message.step_key}: {message.error}", soft_wrap=True, markup=False)
                return
            if sequence is not None:
                _known_sequence(application, session, sequence)
            rows = application.enrollments(session, email=lead, sequence=sequence)
            if lead is None:
                table = Table("lead", "company", "phase", "status", "last step", "next action")
                for enrollment in rows:
                    state = enrollment.state
                    table.add_row(enrollment.lead.email, enrollment.lead.company, enrollment.phase, enrollment.lead.status, state.get("last_step") or "-", _local(enrollment.next_action_at, enrollment.lead.timezone or None))
                out.print(table)
                return
            if not rows:
                out.print(f"{lead} is not enrolled in anything")
            for enrollment in rows:
                print_timeline(application, session, enrollment)
    except OutreachError as exc:
        _fail(exc)


def _known_sequence(application: App, session, name: str) -> None:  # type: ignore[no-untyped-def]
    """A sequence some enrollment ran (stored), or one in the sequences folder."""
    from sqlalchemy import select

    from outreach.db.models import SequenceVersion

    stored = set(session.scalars(select(SequenceVersion.name).distinct()))
    if name in stored:
        return
    files = application.sequences()
    if name not in files:
        raise NotFound(f"no sequence {name!r}; known: {', '.join(sorted(stored | set(files))) or 'none'}")


def print_outbox(application: App, session) -> None:  # type: ignore[no-untyped-def]
    """What reached the mail servers, what is in flight, and what is stuck."""
    from outreach.health import LATE, outbox

    now = application.clock.now()
    box = outbox(session, now)
    if not box.by_status:
        return
    counts = box.by_status
    out.print(
        f"outbox: {counts.get('sent', 0)} accepted by the mail servers ({box.sent_last_hour} in the last hour), "
        + ", ".join(f"{counts[s]} {s}" for s in ("drafted", "cancelled", "failed") if counts.get(s))
    )
    waiting = counts.get("planned", 0) - box.due.count
    out.print(f"in flight: {box.claimed} being sent, {box.due.count} due and waiting for a worker, {waiting} waiting for their time (window, cap, backoff, pause)")
    if box.abandoned.count:
        out.print(f"[bold red]stuck:[/] {box.abandoned.count} left in sending by a worker that stopped (lease over for {_ago(box.abandoned.age(now))}); a worker takes them after checking the Sent folder")
    if box.late.count:
        out.print(f"[bold red]stuck:[/] {box.late.count} due for more than {int(LATE.total_seconds() // 60)} min and not taken (oldest {_ago(box.late.age(now))}): are the workers and the broker running?")


def print_bounces(application: App, session) -> None:  # type: ignore[no-untyped-def]
    """Bounces by reason, and those that said something about our own sending, per mailbox (all records kept)."""
    from outreach.crm import bounce_reasons, refusals_by_mailbox

    reasons = bounce_reasons(session, None)
    if not reasons:
        return
    out.print("bounces by reason: " + " · ".join(f"{reason} {count}" for reason, count in reasons.items()), markup=False)
    for mailbox, refused in refusals_by_mailbox(session, None).items():
        found = ", ".join(f"{count} {reason}" for reason, count in refused.items())
        out.print(f"refused for reasons about the sender, to {mailbox}: {found} (leads kept; a task each for their owner)", markup=False)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_timeline(application: App, session, enrollment) -> None:  # type: ignore[no-untyped-def]
    lead = enrollment.lead
    who = lead.display_name
    company = f", {lead.company}" if lead.company else ""
    tz = lead.timezone or "(mailbox zone)"
    out.print(f"\n[bold]{who}{company}[/] <{lead.email}> · {enrollment.sequence_name} v{enrollment.sequence.version} · {enrollment.phase} · {lead.status} · {tz}")
    items = application.timeline(session, enrollment)
    if not items:
        out.print("  nothing planned")
        return
    rows = [_row(item) for item in items]
    headers = [f"when ({_zone_label(items[0].local)})", "step", "action", "thread", "subject / note", "from / for"]
    table = Table(box=None, pad_edge=False, show_edge=False)
    for index, header in enumerate(headers):
        widest = max(len(header), *(len(row[index]) for row in rows))
        if index == 4:
            table.add_column(header, overflow="ellipsis", no_wrap=True, max_width=72)
        else:
            table.add_column(header, no_wrap=True, min_width=min(widest, 40), overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _zone_label(local: dt.datetime) -> str:
    return local.tzname() or "local"


def _row(item: PlannedItem) -> list[str]:
    when = item.local.strftime("%Y-%m-%d %a %H:%M")
    thread = f"#{item.thread}" if item.thread else ""
    what = {"email": f"email {item.detail}", "task": f"task ({item.detail})"}.get(item.kind, item.detail)
    return [when, item.step, what, thread, item.subject, item.mailbox]


# ---- demo ------------------------------------------------------------------------------------------


@app.command()
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
        from outreach.demo import ConsoleWatcher, print_summary, run_demo
        from workers.inprocess import InProcess

        with ConsoleWatcher(out) as watcher:
            result = run_demo(workspace, senders=InProcess, seed=seed, days=days, watcher=watcher)
    except OutreachError as exc:
        _fail(exc)
        return
    print_summary(out, result)
    if not result.finished:
        err.print("[bold red]the demo stopped before its last day[/]")
        raise typer.Exit(1)


def _broker_and_actors(application: App):  # type: ignore[no-untyped-def]
    from workers.actors import declare
    from workers.broker import make_broker

    broker = make_broker(application.settings.broker_url)
    return broker, declare(broker, lambda: application)


@app.command()
def run(
    workspace: WorkspaceOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between scheduler rounds.")] = 5.0,
    threads: Annotated[int, typer.Option(help="Worker threads sending mail.")] = 4,
    listen: Annotated[str, typer.Option(help="HOST:PORT for the unsubscribe endpoint that public_url points at; '' for none.")] = "127.0.0.1:8025",
    metrics: MetricsOpt = None,
) -> None:
    """Run everything in one process: the scheduler, the sending workers, the IMAP poller and the unsubscribe endpoint (Ctrl-C stops).

    With the default broker (stub://) the workers are in-process; with OUTREACH_BROKER_URL
    pointing at Redis or RabbitMQ, this process also works that broker's queue.
    """
    import threading

    from outreach import runner
    from outreach.poller import start_watchers
    from outreach.tracking.web import parse_listen, serve

    try:
        address = parse_listen(listen) if listen else None
        _service_logging()
        with _app(workspace) as application:
            runner.prepare(application)  # a broken sequence or an unknown mailbox stops it here, before anything starts
            _serve_metrics(metrics, application)
            broker, actors = _broker_and_actors(application)
            runner.start_readers(application)
            worker = runner.embedded_worker(broker, threads)
            stop = threading.Event()
            runner.stop_on_signals(stop)
            watchers = start_watchers(application, stop)
            web = serve(application, *address, stop) if address else None
            runner.tune_collector()
            out.print(f"outreach running: {len(application.settings.workspace.mailboxes)} mailbox(es), {len(watchers)} watched over IMAP, broker {application.settings.broker_url}, {threads} sending thread(s){f', unsubscribe endpoint on port {web.port}' if web else ''}. Ctrl-C stops.")
            try:
                runner.run_scheduler(application, actors.enqueue, stop, interval=interval)
            finally:
                stop.set()
                worker.stop()
                for watcher in watchers:
                    watcher.join(15)
                runner.stop_readers()
    except OSError as exc:
        _fail(_cannot_listen(listen, exc, "choose another port, or --listen '' for none"))
    except OutreachError as exc:
        _fail(exc)


@app.command()
def scheduler(
    workspace: WorkspaceOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between rounds.")] = 5.0,
    metrics: MetricsOpt = None,
) -> None:
    """Run the scheduler only; workers run apart: `dramatiq workers.entry` (same OUTREACH_BROKER_URL).

    Any number of schedulers may run against one PostgreSQL: each round locks what it takes.
    """
    import threading

    from outreach import runner

    try:
        _service_logging()
        with _app(workspace) as application:
            runner.prepare(application)
            _serve_metrics(metrics, application)
            _, actors = _broker_and_actors(application)
            runner.tune_collector()
            stop = threading.Event()
            runner.stop_on_signals(stop)
            runner.run_scheduler(application, actors.enqueue, stop, interval=interval)
    except OutreachError as exc:
        _fail(exc)


def _cannot_listen(listen: str, exc: OSError, fix: str) -> ConfigError:
    return ConfigError(Problem(Location("--listen"), f"cannot listen on {listen}: {exc.strerror or exc}; {fix}"))


def _wait_for_stop(stop: threading.Event) -> None:
    """Until SIGTERM (which sets `stop`) or Ctrl-C."""
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        stop.set()


@app.command()
def serve(
    workspace: WorkspaceOpt = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on; public_url in outreach.yaml must reach it.")] = "127.0.0.1:8025",
) -> None:
    """Serve the one-click unsubscribe endpoint (RFC 8058) alone, e.g. behind a reverse proxy (Ctrl-C stops)."""
    import signal
    import threading

    from outreach.tracking.web import parse_listen
    from outreach.tracking.web import serve as serve_web

    try:
        host, port = parse_listen(listen)
        _service_logging()
        with _app(workspace) as application:
            _ = application.settings.secret_key
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            web = serve_web(application, host, port, stop)
            out.print(f"unsubscribe endpoint on http://{host}:{web.port}/u/… (public_url: {application.settings.workspace.public_url}). Ctrl-C stops.")
            _wait_for_stop(stop)
            web.thread.join(5)
    except OSError as exc:
        _fail(_cannot_listen(listen, exc, "choose another port"))
    except OutreachError as exc:
        _fail(exc)


@app.command()
def poll(
    workspace: WorkspaceOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One pass over every mailbox, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes where the server has no IDLE.")] = 30.0,
    metrics: MetricsOpt = None,
) -> None:
    """Read every mailbox's INBOX and Sent folder: replies, auto-replies, bounces and opt-outs are
    recorded once and acted on (IDLE where the server offers it; Ctrl-C stops)."""
    import threading

    from outreach import runner
    from outreach.poller import PollResult, poll_all, start_watchers

    def show(address: str, result: PollResult) -> None:
        if result.recorded or result.resynced:
            found = ", ".join(f"{count} {kind.replace('_', '-')}" for kind, count in sorted(result.recorded.items()))
            out.print(f"{address}: {result.seen} new message(s){'; ' + found if found else ''}{'; re-read ' + ', '.join(result.resynced) if result.resynced else ''}")

    try:
        with _app(workspace) as application:
            runner.prepare(application)
            runner.start_readers(application)
            if once:
                for address, result in poll_all(application).items():
                    show(address, result)
                    if not result.recorded:
                        out.print(f"{address}: {result.seen} new message(s), none about our leads")
                return
            _service_logging()
            _serve_metrics(metrics)
            runner.tune_collector()
            stop = threading.Event()
            runner.stop_on_signals(stop)
            watchers = start_watchers(application, stop, interval=interval, on_result=show)
            if not watchers:
                raise ConfigError(Problem(Location(str(application.settings.root / "outreach.yaml")), "no mailbox has imap settings; add an imap: section to the mailboxes to watch"))
            out.print(f"watching {len(watchers)} mailbox(es). Ctrl-C stops.")
            while not stop.wait(1):
                pass
            for watcher in watchers:
                watcher.join(15)
            runner.stop_readers()
    except OutreachError as exc:
        _fail(exc)


@app.command()
def check(workspace: WorkspaceOpt = None) -> None:
    """Health check: the workspace file, the database and its schema, the sequences. Exit 0 when all is well."""
    try:
        settings = load_settings(workspace)
        engine = make_engine(settings.database_url)
        try:
            with _database(settings):
                current, head = current_revision(engine), head_revision(engine)
        finally:
            engine.dispose()
        out.print(f"workspace  {settings.root} ({len(settings.workspace.mailboxes)} mailboxes, {len(settings.workspace.team)} people)")
        from outreach.config import _hide

        out.print(f"database   {_hide(settings.database_url)}")
        out.print(f"schema     {current or 'empty'} (newest {head})")
        if current != head:
            err.print("the schema is behind; run `outreach db upgrade`")
            raise typer.Exit(1)
        with _app(workspace) as application:
            found, problems = application.lint()
        out.print(f"sequences  {len(found)} ok, {len(problems)} problem(s)")
        if problems:
            raise typer.Exit(2)
    except OutreachError as exc:
        _fail(exc)


_register_crm(app)  # tasks, lead show/mark/forget, report, purge


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app(prog_name="outreach")


if __name__ == "__main__":
    main()
    sys.exit(0)
