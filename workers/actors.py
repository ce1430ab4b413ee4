"""The actors. Thin: they take ids, call into outreach, and are safe to run twice.

Nothing here runs at import: `declare` puts the actors on the broker it is given, for the
application it is given (the worker entry, `outreach run`, the demo and the tests each call it).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq

from outreach import metrics
from outreach.db.models import Message
from outreach.db.session import transaction
from outreach.delivery import deliver_many, wake
from outreach.logs import outage
from outreach.service import App

log = logging.getLogger(__name__)

SEND_QUEUE = "outreach-send"
DEAD_QUEUE = "outreach-dead"
SEND_TIME_LIMIT_MS = 120_000  # well inside the delivery lease, so a live worker keeps its claim


class Unavailable(Exception):
    """A server delivery needs is away: the message is tried again later, and the log says so in one line."""


@dataclass(frozen=True)
class Actors:
    """The actors as declared on one broker. Their names and queues are what messages in a
    broker's queues carry, so they stay as they are across versions."""

    broker: dramatiq.Broker
    send_message: dramatiq.Actor[[int], None]
    send_messages: dramatiq.Actor[[list[int]], None]
    mark_dead: dramatiq.Actor[[dict[str, Any], dict[str, Any]], None]

    def enqueue(self, message_ids: list[int]) -> None:
        """Hand a batch of due messages (one mailbox) to the workers."""
        if len(message_ids) == 1:
            self.send_message.send(message_ids[0])
        else:
            self.send_messages.send(message_ids)


def declare(broker: dramatiq.Broker, app: Callable[[], App]) -> Actors:
    """The actors on `broker`, delivering with the application `app()` returns (called when a
    message is worked on, so a worker process makes its application once it is running)."""

    @dramatiq.actor(
        broker=broker, queue_name=SEND_QUEUE, max_retries=5, min_backoff=5_000, max_backoff=300_000,
        time_limit=SEND_TIME_LIMIT_MS, on_retry_exhausted="mark_dead", throws=(Unavailable,),
    )
    def send_message(message_id: int) -> None:
        """Deliver one outbox message (idempotent: the outbox row decides)."""
        _deliver(app(), [message_id])

    @dramatiq.actor(broker=broker, queue_name=SEND_QUEUE, max_retries=0, time_limit=SEND_TIME_LIMIT_MS)
    def send_messages(message_ids: list[int]) -> None:
        """Deliver a batch from one mailbox: the database work is shared, each message keeps its outcome.

        Should the batch fail as a whole, each message goes on alone through `send_message`, which
        retries and dead-letters one message at a time; those already done finish at once.
        """
        try:
            _deliver(app(), message_ids)
        except Exception:  # noqa: BLE001 - _deliver has told what happened
            try:
                for message_id in message_ids:
                    send_message.send(message_id)
            except Exception as exc:
                if (reason := outage(exc)) is None:
                    raise
                log.warning("%d message(s) wait for the scheduler to hand them over again: %s", len(message_ids), reason)

    @dramatiq.actor(broker=broker, queue_name=DEAD_QUEUE, max_retries=0)
    def mark_dead(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
        """A send whose actor kept crashing: the outbox row is marked failed, visible in `outreach status`."""
        _mark_dead(app(), message, retry_info)

    return Actors(broker, send_message, send_messages, mark_dead)


def _deliver(app: App, message_ids: list[int]) -> None:
    """One line a batch: what became of its messages, and how long it took."""
    started = time.monotonic()
    try:
        outcomes = deliver_many(app, message_ids)
    except Exception as exc:
        reason = outage(exc)
        if reason is None:
            log.exception("delivering %d message(s) failed", len(message_ids))
            raise
        log.warning(
            "delivering %d message(s) failed: %s; they are tried again", len(message_ids), reason,
            extra={"event": "delivery-failed", "reason": reason},
        )
        raise Unavailable(reason) from exc
    counts = Counter(outcome.value for outcome in outcomes.values())
    metrics.sent(outcome.value for outcome in outcomes.values())
    took = time.monotonic() - started
    log.info(
        "delivered %d message(s): %s in %.2f s", len(outcomes), ", ".join(f"{n} {what}" for what, n in sorted(counts.items())), took,
        extra={"event": "delivery", "outcomes": dict(counts), "seconds": round(took, 3)},
    )


def _mark_dead(app: App, message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    args = message.get("args") or [None]
    with transaction(app.sessions) as session:
        row = session.get(Message, args[0])
        if row is not None and row.status not in ("sent", "cancelled"):
            row.status = "failed"
            row.error = f"the worker failed {retry_info.get('retries')} times: {message.get('options', {}).get('traceback', '')[-500:]}"
            wake(session, row.enrollment_id, app.clock.now())  # the next step need not wait for it
    log.warning("message %s dead-lettered after %s worker failures", args[0], retry_info.get("retries"))
