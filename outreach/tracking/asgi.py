"""The one ASGI application the server runs: the public unsubscribe endpoint and a health check,
with room for the web app's and the API's routers. Every answer to a bad request is a small page
that says what went wrong; request bodies are bounded everywhere (a router may set its own limit).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from outreach.service import App
from outreach.tracking import optout
from outreach.tracking.pages import page

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # for any route that does not set its own

_ANSWERS = {
    404: ("Not found", "<p>There is nothing here.</p>"),
    405: ("Not allowed", "<p>Use the link from the email.</p>"),
    413: ("Too large", "<p>This request is too large for this address.</p>"),
}


def create_app(app: App) -> FastAPI:
    web = FastAPI(title="outreach", docs_url=None, redoc_url=None, openapi_url=None, max_body_size=MAX_BODY)
    web.include_router(optout.router(app))

    @web.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        return PlainTextResponse("ok")

    @web.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        title, body = _ANSWERS.get(exc.status_code, (exc.detail, ""))
        return page(exc.status_code, title, body, dict(exc.headers or {}))

    @web.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> Response:
        log.warning("the database did not answer: %s", type(exc.orig).__name__ if exc.orig else exc)
        return page(503, "Try again soon", "<p>We cannot do this right now; try the link again in a few minutes.</p>", {"Retry-After": "120"})

    @web.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:  # then logged by the server, with the traceback
        return page(500, "Something went wrong", "<p>This did not work on our side; try the link again later.</p>")

    return web
