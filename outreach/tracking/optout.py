"""One-click unsubscribe (RFC 8058): the routes under /u/ and what they do.

`GET /u/<token>` shows a page with one button; `POST /u/<token>` (what mail clients send for
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and what the button sends) unsubscribes:
the address is suppressed and every running enrollment of the lead ends. A token is signed, so
nobody can unsubscribe someone else; a bad one gets a 400 that says so and changes nothing, an
expired one a page that says how to unsubscribe by replying. Asking twice is fine.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass

import anyio
from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from outreach.db.models import Enrollment, Lead
from outreach.db.session import transaction
from outreach.errors import InputError, Location, Problem
from outreach.sequences import engine as eng
from outreach.service import App, record, suppress
from outreach.tracking.pages import BY_REPLY, page, text
from outreach.tracking.unsubscribe import VALID_FOR, LegacyToken, LinkToken, expired, verify

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # the one-click body is 26 bytes; the button's form sends the same
BODY_SECONDS = 10.0  # to receive it: a client that trickles its body holds nothing for long
DB_THREADS = 8  # requests of this endpoint in the database at once; the others wait their turn


class LinkExpired(InputError):
    """Signed by us, but made longer ago than a link lives."""


class LinkUnknown(InputError):
    """Signed by us, but the record it names was erased."""


@dataclass(frozen=True)
class Addressee:
    email: str
    enrollment_id: int
    lead_id: int


def addressee(session: Session, token: LinkToken | LegacyToken, now: dt.datetime) -> Addressee:
    """Whom a verified token unsubscribes; LinkExpired or LinkUnknown when it no longer does."""
    enrollment = session.get(Enrollment, token.enrollment_id)
    if enrollment is None:
        raise LinkUnknown(Problem(Location("unsubscribe link"), "we hold no record for this link any more"))
    # A token from before links were dated: its emails went out while the enrollment ran, so it
    # lives as long after the enrollment last changed.
    made_at = token.made_at if isinstance(token, LinkToken) else enrollment.updated_at
    if expired(made_at, now):
        raise LinkExpired(Problem(Location("unsubscribe link"), f"this link was made more than {VALID_FOR.days} days ago, and unsubscribe links work for that long"))
    email = token.email if isinstance(token, LegacyToken) else enrollment.lead.email
    return Addressee(email, enrollment.id, enrollment.lead_id)


def look_up(app: App, secret: str, token: str) -> Addressee:
    """Whom a link unsubscribes, changing nothing (a page view: mail scanners follow links)."""
    verified = verify(secret, token)
    with app.sessions() as session:
        return addressee(session, verified, app.clock.now())


def unsubscribe(app: App, secret: str, token: str, *, source: str) -> tuple[Addressee, bool]:
    """Unsubscribe the address a token was made for: (whom, whether it was new)."""
    verified = verify(secret, token)
    now = app.clock.now()
    with transaction(app.sessions) as session:
        who = addressee(session, verified, now)
        # the lead's row is the lock two clicks on one link take in turn (nothing else locks it)
        lead = session.scalars(select(Lead).where(Lead.id == who.lead_id).with_for_update(of=Lead)).one()
        fresh = suppress(session, who.email, "unsubscribe", f"{source} (enrollment {who.enrollment_id})", now)
        stopped = app.feed_lead(session, lead, eng.Unsubscribed(at=now))
        if fresh or stopped:
            record(session, stopped[0] if stopped else None, now, "unsubscribe", f"unsubscribed through the {source}", channel="web", lead_id=lead.id, enrollments=[e.id for e in stopped])
    if fresh:
        log.info("enrollment %d: unsubscribed through the %s", who.enrollment_id, source)
    return who, fresh


def _refused(exc: InputError) -> Response:
    said = str(exc.problems[0].message if exc.problems else exc)
    sentence = f"<p>{text(said[0].upper() + said[1:])}.</p>{BY_REPLY}"
    if isinstance(exc, LinkExpired):
        return page(410, "This link has expired", sentence)
    if isinstance(exc, LinkUnknown):
        return page(410, "This link no longer works", sentence)
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
