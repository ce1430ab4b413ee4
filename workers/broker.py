"""One factory for brokers, from a URL: stub:// (in-process), redis://..., amqp://... (RabbitMQ)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from outreach.errors import ConfigError, Location, Problem

HEARTBEAT_TIMEOUT_MS = 15_000  # a worker silent this long is taken for dead
MAINTENANCE_CHANCE = 50_000  # in a million commands: with a few workers fetching each second, a look every few seconds


def make_broker(url: str) -> dramatiq.Broker:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "stub":
        return StubBroker()
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        # A worker that died holding batches (taken from the queue, not acknowledged) has them put
        # back by the next "maintenance" after its heartbeats stop. Dramatiq's defaults (60 s of
        # silence, maintenance on 0.1 % of commands) leave them with the dead worker for many
        # minutes; a live worker's heartbeat comes with every fetch, about once a second.
        return RedisBroker(url=url, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS, maintenance_chance=MAINTENANCE_CHANCE)  # type: ignore[no-untyped-call]
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    raise ConfigError(
        Problem(Location("OUTREACH_BROKER_URL"), f"unknown broker {scheme!r}; use stub://, redis://host:6379/0 or amqp://user:pass@host:5672/")
    )
