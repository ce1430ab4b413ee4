"""The one-click unsubscribe endpoint over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.db.models import Enrollment, Event, Suppression
from outreach.service import App
from outreach.tracking.unsubscribe import link
from outreach.tracking.web import serve
from tests.unit.test_unsubscribe_tokens import legacy_sign

START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
LEAD = "ananya.rao@acme.example"


@pytest.fixture
def served(workspace: Path, database_url: str) -> Iterator[tuple[App, str]]:
    app = App(load_settings(workspace, {"OUTREACH_DATABASE_URL": database_url, "OUTREACH_SECRET_KEY": "web-test-key"}), FakeClock(START), migrate=True)
    app.import_leads(workspace / "examples" / "leads.csv")
    app.enroll("bd-client-follow-up", [LEAD, "vikram@sundaram.example.com"], seed=3)
    app.enroll("support-check-in", [LEAD], seed=4)
    stop = threading.Event()
    endpoint = serve(app, "127.0.0.1", 0, stop)
    try:
        yield app, f"http://127.0.0.1:{endpoint.port}"
    finally:
        stop.set()
        endpoint.thread.join(5)
        app.close()


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/x-www-form-urlencoded"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def state(app: App) -> tuple[dict[str, str], list[str]]:
    with app.sessions() as session:
        phases = {f"{e.lead.email} {e.sequence_name}": e.phase for e in session.scalars(select(Enrollment))}
        return phases, list(session.scalars(select(Suppression.email)))


def test_one_click_post_unsubscribes_and_ends_every_running_enrollment_of_the_lead(served: tuple[App, str]) -> None:
    app, base = served
    with app.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=LEAD), Enrollment.sequence_name == "bd-client-follow-up")).one()
    url = link(base, app.settings.secret_key, enrollment.id, START)
    before = state(app)

    status, page = call(url)  # what a link scanner does: shows the page, changes nothing
    assert status == 200 and f"Unsubscribe {LEAD}" in page and 'method="post"' in page
    assert state(app) == before

    status, page = call(url, "POST", b"List-Unsubscribe=One-Click")
    assert status == 200 and "is unsubscribed" in page
    phases, suppressed = state(app)
    assert suppressed == [LEAD]
    assert phases[f"{LEAD} bd-client-follow-up"] == "stopped" and phases[f"{LEAD} support-check-in"] == "stopped"
    assert phases["vikram@sundaram.example.com bd-client-follow-up"] == before[0]["vikram@sundaram.example.com bd-client-follow-up"]
    with app.sessions() as session:
        assert session.scalars(select(Event.channel).where(Event.kind == "unsubscribe")).all() == ["web"]

    status, page = call(url, "POST", b"List-Unsubscribe=One-Click")
    assert status == 200 and "already unsubscribed" in page
    with app.sessions() as session:
        assert len(session.scalars(select(Event).where(Event.kind == "unsubscribe")).all()) == 1


@pytest.mark.parametrize(
    ("path", "method", "status", "words"),
    [
        ("/u/not-a-token", "POST", 400, "not valid"),
        ("/u/{token}x", "POST", 400, "not valid"),
        ("/u/{token}", "PUT", 405, "Use the link"),
        ("/unsubscribe", "GET", 404, "nothing here"),
        ("/u/{token}/more", "POST", 404, "nothing here"),
    ],
)
def test_bad_requests_get_a_clear_answer_and_change_nothing(served: tuple[App, str], path: str, method: str, status: int, words: str) -> None:
    app, base = served
    token = link("", app.settings.secret_key, 1, START).rsplit("/", 1)[1]
    before = state(app)
    got, page = call(base + path.format(token=token), method, b"List-Unsubscribe=One-Click" if method != "GET" else None)
    assert (got, words in page) == (status, True)
    assert state(app) == before


def test_health_check(served: tuple[App, str]) -> None:
    assert call(served[1] + "/healthz") == (200, "ok")


def _enrollment_id(app: App, email: str = LEAD) -> int:
    with app.sessions() as session:
        return session.scalars(select(Enrollment.id).where(Enrollment.lead.has(email=email), Enrollment.sequence_name == "bd-client-follow-up")).one()


def test_a_link_works_for_400_days_and_then_says_how_to_unsubscribe_by_replying(served: tuple[App, str]) -> None:
    app, base = served
    enrollment = _enrollment_id(app)
    before = state(app)
    old = link(base, app.settings.secret_key, enrollment, START - dt.timedelta(days=400, seconds=1))
    for method in ("GET", "POST"):
        status, page = call(old, method, b"List-Unsubscribe=One-Click" if method == "POST" else None)
        assert status == 410 and "expired" in page and "more than 400 days ago" in page and "“unsubscribe”" in page, page
        assert LEAD not in page
    assert state(app) == before

    status, page = call(link(base, app.settings.secret_key, enrollment, START - dt.timedelta(days=400)), "POST", b"List-Unsubscribe=One-Click")
    assert status == 200 and "is unsubscribed" in page
    assert state(app)[1] == [LEAD]


def test_a_link_whose_record_was_erased_says_so_and_changes_nothing(served: tuple[App, str]) -> None:
    app, base = served
    before = state(app)
    status, page = call(link(base, app.settings.secret_key, 10**9, START), "POST", b"List-Unsubscribe=One-Click")
    assert status == 410 and "no record for this link" in page and "“unsubscribe”" in page
    assert state(app) == before


def test_links_sent_in_the_older_form_work_until_their_enrollment_was_quiet_for_400_days(served: tuple[App, str]) -> None:
    app, base = served
    enrollment = _enrollment_id(app, "vikram@sundaram.example.com")
    older_form = f"{base}/u/{legacy_sign(app.settings.secret_key, 'vikram@sundaram.example.com', enrollment)}"
    assert isinstance(app.clock, FakeClock)
    app.clock.advance(dt.timedelta(days=401))
    before = state(app)
    status, page = call(older_form, "POST", b"List-Unsubscribe=One-Click")
    assert status == 410 and "expired" in page
    assert state(app) == before

    app.clock.advance(dt.timedelta(days=-2))
    status, page = call(older_form)
    assert status == 200 and "Unsubscribe vikram@sundaram.example.com" in page
    status, page = call(older_form, "POST", b"List-Unsubscribe=One-Click")
    assert status == 200 and "vikram@sundaram.example.com</b> is unsubscribed" in page
    assert state(app)[1] == ["vikram@sundaram.example.com"]
