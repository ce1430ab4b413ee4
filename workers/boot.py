"""A worker process's set-up, by an explicit call: the settings read once, the broker made with
the actors on it, logging in the format asked for, metrics once the worker has booted.

`workers.entry` calls `boot()` for `dramatiq workers.entry`; nothing here runs at import.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping

import dramatiq

from outreach import metrics
from outreach.config import Settings, load_settings
from outreach.errors import OutreachError
from outreach.logs import use_format_from_environment
from outreach.runner import tune_collector
from outreach.service import App
from workers.actors import Actors, declare
from workers.broker import make_broker

log = logging.getLogger(__name__)


def boot(environ: Mapping[str, str] | None = None) -> Actors:
    """Set up this worker process from the environment (OUTREACH_WORKSPACE, OUTREACH_BROKER_URL, ...)
    and make its broker Dramatiq's own. A workspace or setting that cannot be used ends the process
    with the located message and the error's exit code, before any message is taken."""
    env = os.environ if environ is None else environ
    try:
        settings = load_settings(None, env)
        broker = make_broker(settings.broker_url)
    except OutreachError as exc:
        print(f"outreach workers cannot start:\n{exc}", file=sys.stderr, flush=True)
        raise SystemExit(exc.exit_code) from None
    broker.add_middleware(_Metrics(env.get("OUTREACH_METRICS") or None))
    use_format_from_environment()
    actors = declare(broker, _Application(settings))
    dramatiq.set_broker(broker)
    return actors


class _Application:
    """The process's application, made when the first message is worked on (a worker process is
    a long-running service: its start-up is done then)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._app: App | None = None
        self._lock = threading.Lock()

    def __call__(self) -> App:
        with self._lock:
            if self._app is None:
                self._app = App(self._settings, migrate=False)
                tune_collector()
            return self._app


class _Metrics(dramatiq.Middleware):
    """A worker process serves its metrics where OUTREACH_METRICS says (HOST:PORT), once it has booted."""

    def __init__(self, listen: str | None) -> None:
        self.listen = listen

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not self.listen:
            return
        try:
            port = metrics.serve(self.listen)
        except OSError as exc:
            log.warning("metrics not served on %s: %s (give each worker process a port of its own)", self.listen, exc)
        else:
            log.info("metrics on port %d", port)
