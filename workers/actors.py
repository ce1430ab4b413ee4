"""The actors. Thin: they take ids, call into outreach, and are safe to run twice."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from typing import Any

import dramatiq

from outreach import metrics
from outreach.config import load_settings
from outreach.delivery import deliver_many, wake
from outreach.logs import outage, use_format_from_environment
from outreach.runner import tune_collector
from outreach.service import App
from workers.broker import make_broker

log = logging.getLogger(__name__)

SEND_TIME_LIMIT_MS = 120_000  # well inside the delivery lease, so a live worker keeps its claim

_app: App | None = None
_lock = threading.Lock()


def configure(app: App | None) -> None:
    """Use this application (tests, `outreach run`); by default one is made from the environment."""
    global _app
    _app = app


def get_app() -> App:
    global _app
    with _lock:
        if _app is None:
            _app = App(load_settings(), migrate=False)
            tune_collector()  # a worker process is a long-running service: its start-up is done
        return _app


class _Metrics(dramatiq.Middleware):
    """A worker process serves its metrics where OUTREACH_METRICS says (HOST:PORT), once it has booted."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        listen = os.environ.get("OUTREACH_METRICS")
        if listen:
            try:
                port = metrics.serve(listen)
            except OSError as exc:
                log.warning("metrics not served on %s: %s (give each worker process a port of its own)", listen, exc)
            else:
                log.info("metrics on port %d", port)


# The actors are declared on the broker named by OUTREACH_BROKER_URL (or the workspace file).
dramatiq.set_broker(make_broker(load_settings().broker_url))
dramatiq.get_broker().add_middleware(_Metrics())
use_format_from_environment()


class Unavailable(Exception):
    """A server delivery needs is away: the message is tried again later, and the log says so in one line."""


@dramatiq.actor(queue_name="outreach-send", max_retries=5, min_backoff=5_000, max_backoff=300_000, time_limit=SEND_TIME_LIMIT_MS, on_retry_exhausted="mark_dead", throws=(Unavailable,))
def send_message(message_id: int) -> None:
    """Deliver one outbox message (idempotent: the outbox row decides)."""
    _deliver([message_id])


@dramatiq.actor(queue_name="outreach-send", max_retries=0, time_limit=SEND_TIME_LIMIT_MS)
def send_messages(message_ids: list[int]) -> None:
    """Deliver a batch from one mailbox: the database work is shared, each message keeps its outcome.

    Should the batch fail as a whole, each message goes on alone through `send_message`, which
    retries and dead-letters one message at a time; those already done finish at once.
    """
    try:
        _deliver(message_ids)
    except Exception:  # noqa: BLE001 - _deliver has told what happened
        try:
            for message_id in message_ids:
                send_message.send(message_id)
        except Exception as exc:
            if (reason := outage(exc)) is None:
                raise
            log.warning("%d message(s) wait for the scheduler to hand them over again: %s", len(message_ids), reason)


def _deliver(message_ids: list[int]) -> None:
    """One line a batch: what became of its messages, and how long it took."""
    started = time.monotonic()
    try:
        outcomes = deliver_many(get_app(), message_ids)
    except Exception as exc:
        reason = outage(exc)
        if reason is None:
            log.exception("delivering %d message(s) failed", len(message_ids))
            raise
        log.warning("delivering %d message(s) failed: %s; they are tried again", len(message_ids), reason, extra={"event": "delivery-failed", "reason": reason})
        raise Unavailable(reason) from exc
    counts = Counter(outcome.value for outcome in outcomes.values())
    metrics.sent(outcome.value for outcome in outcomes.values())
    took = time.monotonic() - started
    log.info(
        "delivered %d message(s): %s in %.2f s", len(outcomes), ", ".join(f"{n} {what}" for what, n in sorted(counts.items())), took,
        extra={"event": "delivery", "outcomes": dict(counts), "seconds": round(took, 3)},
    )


def enqueue(message_ids: list[int]) -> None:
    """Hand a batch of due messages (one mailbox) to the workers."""
    if len(message_ids) == 1:
        send_message.send(message_ids[0])
    else:
        send_messages.send(message_ids)


@dramatiq.actor(queue_name="outreach-dead", max_retries=0)
def mark_dead(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    """A send whose actor kept crashing: the outbox row is marked failed, visible in `outreach status`."""
    from outreach.db.models import Message
    from outreach.db.session import transaction

    args = message.get("args") or [None]
    app = get_app()
    with transaction(app.sessions) as session:
        row = session.get(Message, args[0])
        if row is not None and row.status not in ("sent", "cancelled"):
            row.status = "failed"
            row.error = f"the worker failed {retry_info.get('retries')} times: {message.get('options', {}).get('traceback', '')[-500:]}"
            wake(session, row.enrollment_id, app.clock.now())  # the next step need not wait for it
    log.warning("message %s dead-lettered after %s worker failures", args[0], retry_info.get("retries"))


ACTORS = (send_message, send_messages, mark_dead)


def bind(broker: dramatiq.Broker) -> None:
    """Move the actors onto another broker (tests, the embedded runner)."""
    for actor in ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
