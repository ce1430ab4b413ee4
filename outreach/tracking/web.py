"""The public endpoint: one-click unsubscribe (RFC 8058) and a health check. Plain WSGI.

`GET /u/<token>` shows a page with one button; `POST /u/<token>` (what mail clients send for
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and what the button sends) unsubscribes:
the address is suppressed and every running enrollment of the lead ends. A token is signed, so
nobody can unsubscribe someone else; a bad one gets a 400 that says so and changes nothing.
Asking twice is fine.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy import select

from outreach.db.models import Lead
from outreach.db.session import transaction
from outreach.errors import InputError, Location, Problem
from outreach.sequences import engine as eng
from outreach.service import App, record, suppress
from outreach.tracking.unsubscribe import verify

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
MAX_BODY = 4096  # the one-click body is 26 bytes

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}
button{{font:inherit;padding:.5em 1.2em;border-radius:6px;border:1px solid #555;background:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def unsubscribe(app: App, token: str, *, source: str) -> tuple[str, bool]:
    """Unsubscribe the address a token was made for: (the address, whether it was new)."""
    email, enrollment_id = verify(app.settings.secret_key, token)
    now = app.clock.now()
    with transaction(app.sessions) as session:
        lead = session.scalar(select(Lead).where(Lead.email == email))
        fresh = suppress(session, email, "unsubscribe", f"{source} (enrollment {enrollment_id})", now)
        if lead is not None:
            stopped = app.feed_lead(session, lead, eng.Unsubscribed(at=now))
            if fresh or stopped:
                record(session, stopped[0] if stopped else None, now, "unsubscribe", f"unsubscribed through the {source}", channel="web", lead_id=lead.id, enrollments=[e.id for e in stopped])
    if fresh:
        log.info("%s unsubscribed (%s)", email, source)
    return email, fresh


def make_wsgi(app: App) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    def respond(start: StartResponse, status: str, title: str, body: str, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        page = PAGE.format(title=html.escape(title), body=body).encode()
        start(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page))), ("Cache-Control", "no-store"), *(headers or [])])
        return [page]

    def wsgi(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        if not path.startswith("/u/") or path.count("/") != 2:
            return respond(start, "404 Not Found", "Not found", "<p>There is nothing here.</p>")
        token = path[3:]
        if method not in ("GET", "POST"):
            return respond(start, "405 Method Not Allowed", "Not allowed", "<p>Use the link from the email.</p>", [("Allow", "GET, POST")])
        try:
            if method == "GET":
                email, _ = verify(app.settings.secret_key, token)  # only shows the page: mail scanners follow links
                form = f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe {html.escape(email)}</button></form>'
                return respond(start, "200 OK", "Unsubscribe", f"<p>Stop all emails from us to <b>{html.escape(email)}</b>?</p>{form}")
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY:
                return respond(start, "413 Content Too Large", "Too large", "<p>This request is too large for an unsubscribe.</p>")
            environ["wsgi.input"].read(length)
            email, fresh = unsubscribe(app, token, source="one-click link")
        except InputError as exc:
            return respond(start, "400 Bad Request", "This link does not work", f"<p>{html.escape(str(exc.problems[0].message if exc.problems else exc))}.</p><p>Reply to the email with “unsubscribe” instead, and we will take you off our list.</p>")
        except ValueError:
            return respond(start, "400 Bad Request", "Bad request", "<p>The request length is not a number.</p>")
        note = "You will not get any more emails from us." if fresh else "You were already unsubscribed; you will not get any more emails from us."
        return respond(start, "200 OK", "Unsubscribed", f"<p><b>{html.escape(email)}</b> is unsubscribed. {note}</p>")

    return wsgi


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("web: " + format, *args)


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


def serve(app: App, host: str, port: int, stop: threading.Event) -> Endpoint:
    """Serve the endpoint in a thread until `stop` is set."""
    server = make_server(host, port, make_wsgi(app), server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="web", daemon=True)
    thread.start()

    def shutdown() -> None:
        stop.wait()
        server.shutdown()
        server.server_close()

    threading.Thread(target=shutdown, name="web-stop", daemon=True).start()
    log.info("unsubscribe endpoint on http://%s:%d", host, server.server_port)
    return Endpoint(int(server.server_port), thread)
