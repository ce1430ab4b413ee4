"""The HTTP server: the ASGI application (`asgi.create_app`) under uvicorn, in a thread of its own.

Idle connections are closed after `KEEP_ALIVE_SECONDS` (also one that never sends a request),
connections wait in a real listen backlog rather than being reset, at most `MAX_CONNECTIONS` are
served at once (past that, a 503), and a stop lets requests in flight finish for `GRACE_SECONDS`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outreach.errors import InputError, Location, Problem
from outreach.service import App
from outreach.tracking._uvicorn import DeadlineH11Protocol
from outreach.tracking.asgi import create_app

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 5
BACKLOG = 2048  # connections the kernel queues while the server is busy (capped by net.core.somaxconn)
MAX_CONNECTIONS = 1000  # open connections and requests in flight, each; more get a 503
GRACE_SECONDS = 3
STARTUP_SECONDS = 30


class CloseWhenRefused:
    """A request refused for its body (too large, too slow) leaves the rest of the body unread:
    the connection is closed after the answer rather than kept to read what nobody wants."""

    STATUSES = frozenset({408, 413})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in self.STATUSES:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, answer if scope["type"] == "http" else send)


@dataclass(frozen=True)
class Endpoint:
    port: int
    thread: threading.Thread


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, as in --listen 127.0.0.1:8025."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(Problem(Location("--listen"), f"{value!r} is not HOST:PORT; write it like 127.0.0.1:8025"))
    return host.strip("[]"), int(port)


def _listen(host: str, port: int) -> socket.socket:
    """Bound here, in the caller's thread, so that a port in use is an OSError the caller sees."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def serve(app: App, host: str, port: int, stop: threading.Event) -> Endpoint:
    """Serve the application in a thread until `stop` is set; returns once it accepts requests."""
    sock = _listen(host, port)
    bound = int(sock.getsockname()[1])
    config = uvicorn.Config(
        CloseWhenRefused(create_app(app)),
        http=DeadlineH11Protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=BACKLOG,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web", daemon=True)
    thread.start()

    def shutdown() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=shutdown, name="web-stop", daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        sock.close()
        raise RuntimeError(f"the web server on {host}:{port} did not start; see the log above")
    log.info("web server on http://%s:%d", host, bound)
    return Endpoint(bound, thread)
