"""Logging for the long-running processes: plain lines or JSON, and the outages they ride out.

A server the program depends on being away (the database restarting, the broker down, a mail
server cutting connections) is expected: it is told in one line with the reason and when the
work is tried again, never with a traceback. Anything else is a defect and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import sqlalchemy.exc

from outreach.errors import ConfigError, Location, Problem
from outreach.mail.transport import TemporaryFailure

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(fmt: str | None = None, level: str | None = None) -> None:
    """Log to stderr, as text or as one JSON object a line (`--log-format json`, or OUTREACH_LOG_FORMAT);
    extra fields given to a log call (`extra={...}`) become the object's keys."""
    fmt = (fmt or os.environ.get("OUTREACH_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise ConfigError(Problem(Location("--log-format"), f"{fmt!r} is not a log format; use text or json"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("OUTREACH_LOG_LEVEL") or "INFO").upper())


def use_format_from_environment() -> None:
    """For processes whose logging another program set up (Dramatiq's worker command): the handlers
    it made keep their places, and write JSON when OUTREACH_LOG_FORMAT says so."""
    if (os.environ.get("OUTREACH_LOG_FORMAT") or "text").lower() != "json":
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_formatter("json"))


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "name": "logger", "asctime": "time"})
    return logging.Formatter(TEXT)


def _broker_errors() -> tuple[type[BaseException], ...]:
    """The brokers' connection errors: Dramatiq's own, and those of the client libraries it uses
    (the Redis and RabbitMQ brokers let some through untranslated)."""
    import dramatiq.errors
    import pika.exceptions
    import redis.exceptions

    return (
        dramatiq.errors.BrokerConnectionError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        pika.exceptions.AMQPConnectionError,
        pika.exceptions.StreamLostError,
    )


def outage(exc: BaseException) -> str | None:
    """The reason in a few words when `exc` is a dependency being away (database, broker, mail
    server); None when it is anything else."""
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)):
        return f"the database is unreachable ({_first_line(exc.orig if getattr(exc, 'orig', None) else exc)})"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return f"the database connection was lost ({_first_line(exc.orig or exc)})"
    if isinstance(exc, _broker_errors()):
        return f"the broker is unreachable ({_first_line(exc)})"
    if isinstance(exc, TemporaryFailure):
        return _first_line(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return f"a connection failed ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException | object) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
