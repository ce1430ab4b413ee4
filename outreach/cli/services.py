"""The commands that run until stopped: `outreach run` (everything in one process), `scheduler`,
`serve` (the unsubscribe endpoint) and `poll` (the mailboxes).

The poller and the web server are imported by the commands that use them: they take about
0.4 s to load, which every other command would pay.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated

import dramatiq
import typer

from outreach import health, runner
from outreach.cli._common import (
    WorkspaceOpt,
    fail,
    open_app,
    out,
    reported,
    service_logging,
    stop_on_signals,
    wait_for_stop,
)
from outreach.errors import ConfigError, Location, OutreachError, Problem
from outreach.metrics import serve as serve_metrics
from outreach.service import App
from workers.actors import Actors, declare
from workers.broker import make_broker

MetricsOpt = Annotated[str | None, typer.Option("--metrics", envvar="OUTREACH_METRICS", help="HOST:PORT to serve Prometheus metrics on (e.g. 127.0.0.1:9464).")]


def _serve_metrics(listen: str | None, application: App | None = None) -> None:
    if not listen:
        return
    read = functools.partial(_outbox_now, application) if application is not None else None
    try:
        port = serve_metrics(listen, read)
    except OSError as exc:
        raise ConfigError(Problem(Location("--metrics"), f"cannot listen on {listen}: {exc.strerror or exc}; choose another port")) from exc
    logging.getLogger("outreach").info("metrics on port %d", port)


def _outbox_now(application: App) -> health.Outbox:
    with application.sessions() as session:
        return health.outbox(session, application.clock.now())


def _cannot_listen(listen: str, exc: OSError, fix: str) -> ConfigError:
    return ConfigError(Problem(Location("--listen"), f"cannot listen on {listen}: {exc.strerror or exc}; {fix}"))


def _broker_and_actors(application: App) -> tuple[dramatiq.Broker, Actors]:
    """The application's broker, with the sending actors declared on it for this application."""
    broker = make_broker(application.settings.broker_url)
    return broker, declare(broker, lambda: application)


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
        service_logging()
        with open_app(workspace) as application:
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
        fail(_cannot_listen(listen, exc, "choose another port, or --listen '' for none"))
    except OutreachError as exc:
        fail(exc)


@reported
def scheduler(
    workspace: WorkspaceOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between rounds.")] = 5.0,
    metrics: MetricsOpt = None,
) -> None:
    """Run the scheduler only; workers run apart: `dramatiq workers.entry` (same OUTREACH_BROKER_URL).

    Any number of schedulers may run against one PostgreSQL: each round locks what it takes.
    """
    service_logging()
    with open_app(workspace) as application:
        runner.prepare(application)
        _serve_metrics(metrics, application)
        _, actors = _broker_and_actors(application)
        runner.tune_collector()
        stop = stop_on_signals()
        runner.run_scheduler(application, actors.enqueue, stop, interval=interval)


@reported
def serve(
    workspace: WorkspaceOpt = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on; public_url in outreach.yaml must reach it.")] = "127.0.0.1:8025",
) -> None:
    """Serve the one-click unsubscribe endpoint (RFC 8058) alone, e.g. behind a reverse proxy (Ctrl-C stops)."""
    from outreach.tracking.web import parse_listen
    from outreach.tracking.web import serve as serve_web

    try:
        host, port = parse_listen(listen)
        service_logging()
        with open_app(workspace) as application:
            _ = application.settings.secret_key
            stop = stop_on_signals()
            web = serve_web(application, host, port, stop)
            out.print(f"unsubscribe endpoint on http://{host}:{web.port}/u/… (public_url: {application.settings.workspace.public_url}). Ctrl-C stops.")
            wait_for_stop(stop)
            web.thread.join(5)
    except OSError as exc:
        raise _cannot_listen(listen, exc, "choose another port") from exc


@reported
def poll(
    workspace: WorkspaceOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One pass over every mailbox, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes where the server has no IDLE.")] = 30.0,
    metrics: MetricsOpt = None,
) -> None:
    """Read every mailbox's INBOX and Sent folder: replies, auto-replies, bounces and opt-outs are
    recorded once and acted on (IDLE where the server offers it; Ctrl-C stops)."""
    from outreach.poller import PollResult, poll_all, start_watchers

    def show(address: str, result: PollResult) -> None:
        if result.recorded or result.resynced:
            found = ", ".join(f"{count} {kind.replace('_', '-')}" for kind, count in sorted(result.recorded.items()))
            out.print(f"{address}: {result.seen} new message(s){'; ' + found if found else ''}{'; re-read ' + ', '.join(result.resynced) if result.resynced else ''}")

    with open_app(workspace) as application:
        runner.prepare(application)
        runner.start_readers(application)
        if once:
            for address, result in poll_all(application).items():
                show(address, result)
                if not result.recorded:
                    out.print(f"{address}: {result.seen} new message(s), none about our leads")
            return
        service_logging()
        _serve_metrics(metrics)
        runner.tune_collector()
        stop = stop_on_signals()
        watchers = start_watchers(application, stop, interval=interval, on_result=show)
        if not watchers:
            raise ConfigError(Problem(Location(str(application.settings.root / "outreach.yaml")), "no mailbox has imap settings; add an imap: section to the mailboxes to watch"))
        out.print(f"watching {len(watchers)} mailbox(es). Ctrl-C stops.")
        wait_for_stop(stop)
        for watcher in watchers:
            watcher.join(15)
        runner.stop_readers()
