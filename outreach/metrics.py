"""Prometheus metrics (`--metrics HOST:PORT`, or OUTREACH_METRICS for the worker processes).

Each process counts what it does itself (sends by outcome, recoveries, answers, poll passes);
the scheduler's endpoint also reads the outbox from the database when it is scraped (queue
depth, how long the oldest due message has waited), so the numbers hold across processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from outreach.errors import ConfigError, Location, Problem

SENDS = Counter("outreach_sends", "Outbox messages this process finished an attempt at, by outcome", ["outcome"])
RECOVERED = Counter("outreach_recovered_sends", "Messages a dead worker left in sending that were found in the Sent folder, so not sent again")
ANSWERS = Counter("outreach_answers", "Inbound mail recorded about leads, by kind", ["kind"])

_passes: dict[str, float] = {}  # mailbox -> monotonic time of its last completed pass
_lock = threading.Lock()


def sent(outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        SENDS.labels(outcome).inc()


def recovered() -> None:
    RECOVERED.inc()


def passed(mailbox: str, recorded: Mapping[str, int]) -> None:
    """A pass over a mailbox is done: its lag starts again from nought."""
    with _lock:
        _passes[mailbox] = time.monotonic()
    for kind, count in recorded.items():
        ANSWERS.labels(kind).inc(count)


class _PollLag(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("outreach_poll_lag_seconds", "Seconds since the mailbox's last completed pass", labels=["mailbox"])
        now = time.monotonic()
        with _lock:
            for mailbox, at in sorted(_passes.items()):
                family.add_metric([mailbox], now - at)
        yield family


class OutboxCollector(Collector):
    """The outbox as the database sees it, read at each scrape."""

    def __init__(self, read: Callable[[], object]) -> None:
        self._read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registered without a read of the database; the names are unique to this collector

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from outreach.health import Outbox

        box = self._read()
        assert isinstance(box, Outbox)
        statuses = GaugeMetricFamily("outreach_outbox_messages", "Outbox messages by status", labels=["status"])
        for status, count in sorted(box.by_status.items()):
            statuses.add_metric([status], count)
        yield statuses
        yield GaugeMetricFamily("outreach_outbox_due", "Messages due now and not yet taken by a worker", value=box.due.count)
        yield GaugeMetricFamily("outreach_outbox_in_flight", "Messages a worker is sending now", value=box.claimed)
        yield GaugeMetricFamily("outreach_outbox_abandoned", "Messages left in sending by a worker whose lease ran out", value=box.abandoned.count)
        yield GaugeMetricFamily("outreach_outbox_oldest_due_seconds", "How long the oldest due, unsent message has waited", value=max(box.due.age(box.at), box.abandoned.age(box.at)))


_poll_lag_registered = False


def serve(listen: str, outbox: Callable[[], object] | None = None) -> int:
    """Expose the metrics on HOST:PORT; the port it listens on."""
    global _poll_lag_registered
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ConfigError(Problem(Location("--metrics"), f"{listen!r} is not HOST:PORT; e.g. 127.0.0.1:9464"))
    if not _poll_lag_registered:
        REGISTRY.register(_PollLag())
        _poll_lag_registered = True
    if outbox is not None:
        REGISTRY.register(OutboxCollector(outbox))
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return int(server.server_port)
