"""Sending inside this process: a broker, the actors declared on it for one application, and
worker threads. The demo and the tests use it; `outreach run` uses the same pieces on the broker
its settings name."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from outreach.service import App
from workers.actors import SEND_QUEUE, declare


class InProcess:
    """Worker threads sending for `app`, on `broker` (a StubBroker of its own when none is given,
    closed by `stop`; one given stays the giver's)."""

    def __init__(self, app: App, threads: int = 2, broker: dramatiq.Broker | None = None) -> None:
        self._owns_broker = broker is None
        self.broker = StubBroker() if broker is None else broker
        self.actors = declare(self.broker, lambda: app)
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=50)
        self.worker.start()

    def enqueue(self, message_ids: list[int]) -> None:
        self.actors.enqueue(message_ids)

    def drain(self) -> None:
        """Until every message handed over is done with."""
        self.broker.join(SEND_QUEUE, timeout=120_000)
        self.worker.join()

    def stop(self) -> None:
        self.worker.stop()
        if self._owns_broker:
            self.broker.flush_all()
            self.broker.close()
