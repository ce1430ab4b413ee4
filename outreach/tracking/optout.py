"""One-click unsubscribe (RFC 8058): the routes under /u/ and what they do.

`GET /u/<token>` shows a page with one button; `POST /u/<token>` (what mail clients send for
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and what the button sends) unsubscribes:
the address is suppressed and every running enrollment of the lead ends. A token is signed, so
nobody can unsubscribe someone else; a bad one gets a 400 that says so and changes nothing.
Asking twice is fine.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import anyio
from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from outreach.db.models import Lead
from outreach.db.session import transaction
from outreach.errors import InputError
from outreach.sequences import engine as eng
from outreach.service import App, record, suppress
from outreach.tracking.pages import BY_REPLY, page, text
from outreach.tracking.unsubscribe import verify

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # the one-click body is 26 bytes; the button's form sends the same
BODY_SECONDS = 10.0  # to receive it: a client that trickles its body holds nothing for long
DB_THREADS = 8  # requests of this endpoint in the database at once; the others wait their turn


@dataclass(frozen=True)
class Addressee:
    email: str
    enrollment_id: int


def look_up(app: App, secret: str, token: str) -> Addressee:
    """Whom a link unsubscribes, changing nothing (a page view: mail scanners follow links)."""
    return Addressee(*verify(secret, token))


def unsubscribe(app: App, secret: str, token: str, *, source: str) -> tuple[Addressee, bool]:
    """Unsubscribe the address a token was made for: (whom, whether it was new)."""
    who = look_up(app, secret, token)
    now = app.clock.now()
    with transaction(app.sessions) as session:
        # the lead's row is the lock two clicks on one link take in turn (nothing else locks it)
        lead = session.scalars(select(Lead).where(Lead.email == who.email).with_for_update(of=Lead)).one_or_none()
        fresh = suppress(session, who.email, "unsubscribe", f"{source} (enrollment {who.enrollment_id})", now)
        if lead is not None:
            stopped = app.feed_lead(session, lead, eng.Unsubscribed(at=now))
            if fresh or stopped:
                record(session, stopped[0] if stopped else None, now, "unsubscribe", f"unsubscribed through the {source}", channel="web", lead_id=lead.id, enrollments=[e.id for e in stopped])
    if fresh:
        log.info("enrollment %d: unsubscribed through the %s", who.enrollment_id, source)
    return who, fresh


def _refused(exc: InputError) -> Response:
    said = str(exc.problems[0].message if exc.problems else exc)
    sentence = f"<p>{text(said[0].upper() + said[1:])}.</p>{BY_REPLY}"
    return page(400, "This link does not work", sentence)


def router(app: App) -> APIRouter:
    """The /u/ routes for `app`, signed with its key (read once, here)."""
    secret = app.settings.secret_key
    database = anyio.CapacityLimiter(DB_THREADS)
    routes = APIRouter(max_body_size=MAX_BODY)

    @routes.get("/u/{token}", include_in_schema=False)
    async def confirm(token: str) -> Response:
        try:
            who = await anyio.to_thread.run_sync(functools.partial(look_up, app, secret, token), limiter=database)
        except InputError as exc:
            return _refused(exc)
        email = text(who.email)
        form = f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe {email}</button></form>'
        return page(200, "Unsubscribe", f"<p>Stop all emails from us to <b>{email}</b>?</p>{form}")

    @routes.post("/u/{token}", include_in_schema=False)
    async def one_click(token: str, request: Request) -> Response:
        try:
            with anyio.fail_after(BODY_SECONDS):
                await request.body()  # read whole (it says nothing we need) so the connection can serve the next request
        except TimeoutError:
            return page(408, "Too slow", "<p>The request did not arrive in time; try the link again.</p>")
        try:
            who, fresh = await anyio.to_thread.run_sync(functools.partial(unsubscribe, app, secret, token, source="one-click link"), limiter=database)
        except InputError as exc:
            return _refused(exc)
        note = "You will not get any more emails from us." if fresh else "You were already unsubscribed; you will not get any more emails from us."
        return page(200, "Unsubscribed", f"<p><b>{text(who.email)}</b> is unsubscribed. {note}</p>")

    return routes
