"""LocalMail dates arrivals by the clock it is given, so the demo's mail is dated by the demo's clock
wherever its story is set, before or after today."""

from __future__ import annotations

import datetime as dt
import smtplib
from email.message import EmailMessage
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import func, select

from outreach.clock import FakeClock
from outreach.db.models import Event, InboundMail
from outreach.db.session import make_engine
from outreach.demo import run_demo
from outreach.demo.localmail import LocalMail
from workers.inprocess import InProcess

ROOT = Path(__file__).resolve().parents[2]
PRIYA = "priya@appneural.example"
LATER = dt.datetime(2031, 5, 5, 10, 0, 0, tzinfo=dt.UTC)  # years after any wall clock this runs on


def _mail(mid: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "lead@acme.example", PRIYA, "Re: hello", mid
    msg.set_content("Thanks.\n")
    return msg.as_bytes()


def test_arrivals_are_dated_by_the_clock_given(tmp_path: Path) -> None:
    clock = FakeClock(LATER)
    with LocalMail(tmp_path / "mail", {PRIYA: "secret"}, clock=clock) as mail:
        with smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10) as smtp:
            smtp.sendmail("lead@acme.example", [PRIYA], _mail("<one@acme.example>"))
        clock.advance(dt.timedelta(days=3, hours=2))
        mail.deliver(_mail("<two@acme.example>"), [PRIYA])
        client = IMAPClient("127.0.0.1", port=mail.imap_port, ssl=False, timeout=10)
        try:
            client.login(PRIYA, "secret")
            client.select_folder("INBOX", readonly=True)
            found = client.fetch(client.search(["ALL"]), ["INTERNALDATE"])
        finally:
            client.logout()
    dates = sorted(data[b"INTERNALDATE"].astimezone(dt.UTC) for data in found.values())
    assert dates == [LATER, LATER + dt.timedelta(days=3, hours=2)]


def test_a_demo_set_in_the_future_dates_every_arrival_in_its_own_time(tmp_path: Path) -> None:
    start = dt.datetime(2031, 3, 3, 2, 30, tzinfo=dt.UTC)  # a Monday, 08:00 in Bengaluru
    played = run_demo(ROOT, senders=InProcess, seed=7, days=2, directory=tmp_path / "demo", start=start)
    assert played.finished and (played.start, played.end) == (start, start + dt.timedelta(days=2))
    engine = make_engine(played.database_url)
    try:
        with engine.connect() as conn:
            first, last, count = conn.execute(select(func.min(InboundMail.received_at), func.max(InboundMail.received_at), func.count()).where(InboundMail.kind.in_(("reply", "auto_reply", "bounce", "own_reply")))).one()
            replies = conn.execute(select(func.count()).select_from(Event).where(Event.kind == "reply")).scalar_one()
    finally:
        engine.dispose()
    assert count > 0 and replies > 0, "people answered in the first two days"
    assert start <= first.replace(tzinfo=dt.UTC) and last.replace(tzinfo=dt.UTC) <= played.end
