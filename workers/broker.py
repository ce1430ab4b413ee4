"""One factory for brokers, from a URL: stub:// (in-process), redis://..., amqp://... (RabbitMQ)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from outreach.errors import ConfigError, Location, Problem


def make_broker(url: str) -> dramatiq.Broker:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "stub":
        return StubBroker()
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    raise ConfigError(
        Problem(Location("OUTREACH_BROKER_URL"), f"unknown broker {scheme!r}; use stub://, redis://host:6379/0 or amqp://user:pass@host:5672/")
    )
