"""parse and classify read anything without raising, and without falling back to their last-resort answer."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from outreach.mail import inbound_auto as auto
from outreach.mail.inbound import Classification, Inbound, Kind, classify, parse
from tests import corpus

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

header_names = st.sampled_from([
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Return-Path",
    "Auto-Submitted", "Precedence", "X-Autoreply", "X-Auto-Response-Suppress", "X-Failed-Recipients",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "X-Apple-Unsubscribe",
])
header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from([
        "", "<>", "auto-replied", "no", "bulk", "=?utf-8?b?w6k=?=", "=?bogus?q?=ZZ?=", "<a@b> <c@d",
        "multipart/report; report-type=delivery-status; boundary=x", "text/plain; charset=x-bogus",
        "base64", "quoted-printable", "attachment", "Mon, 32 Jan 2024 25:61:00 +9999", "MAILER-DAEMON@x",
    ]),
)
content_types = st.sampled_from([
    "text/plain", "text/html", "text/calendar", "message/delivery-status", "message/feedback-report",
    "message/rfc822", "text/rfc822-headers", "application/octet-stream", "text/plain; charset=iso-2022-jp",
    "text/plain; charset=utf-16", "text/plain; charset=nope",
])
encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus"])
bodies = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.sampled_from([
        "Action: failed\nStatus: 5.1.1\nFinal-Recipient: rfc822; a@b.example\n",
        "Action: delayed\nStatus: 4.4.7\n",
        "BEGIN:VCALENDAR\nMETHOD:REPLY\nBEGIN:VEVENT\nATTENDEE;PARTSTAT=ACCEPTED:mailto:a@b\nEND:VEVENT\nEND:VCALENDAR\n",
        "On Mon, 3 Jun 2024 at 10:00, A <a@b.example> wrote:\n> unsubscribe\n",
        "I am out of the office until the 31st of February.",
        '{"notificationType":"Bounce","bounce":{"bouncedRecipients":[{"emailAddress":"x@y"}]}}',
        "<html><body><blockquote>quoted<div>unclosed",
    ]),
)


def _leaf(content_type: str, encoding: str, body: str) -> str:
    return f"Content-Type: {content_type}\nContent-Transfer-Encoding: {encoding}\n\n{body}\n"


def _multipart(children: list[str], subtype: str, boundary: str) -> str:
    parts = "".join(f"--{boundary}\n{child}\n" for child in children)
    return f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\n\n{parts}--{boundary}--\n"


leaves = st.builds(_leaf, content_types, encodings, bodies)
structures = st.recursive(
    leaves,
    lambda inner: st.builds(
        _multipart,
        st.lists(inner, min_size=0, max_size=3),
        st.sampled_from(["mixed", "alternative", "report", "related", "digest"]),
        st.sampled_from(["b1", "b2", "=_x", ""]),
    ),
    max_leaves=8,
)
messages = st.builds(
    lambda headers, structure, charset: (
        "".join(f"{name}: {value}\n" for name, value in headers) + structure
    ).encode(charset, "replace"),
    st.lists(st.tuples(header_names, header_values), max_size=10),
    structures,
    st.sampled_from(["utf-8", "latin-1", "utf-16"]),
)


@st.composite
def email_messages(draw: st.DrawFn) -> bytes:
    """Messages written with the standard library's EmailMessage, with arbitrary headers and parts."""
    msg = EmailMessage()
    names = header_names.filter(lambda name: not name.startswith("Content-"))  # the parts decide those
    for name, value in draw(st.lists(st.tuples(names, header_values), max_size=8)):
        with contextlib.suppress(Exception):  # it refuses some values (line feeds, bad addresses): skip those
            msg[name] = value
    msg.set_content(draw(bodies), subtype=draw(st.sampled_from(["plain", "html"])))
    if draw(st.booleans()):
        msg.add_alternative(draw(bodies), subtype=draw(st.sampled_from(["html", "calendar"])))
    for attachment in draw(st.lists(st.binary(max_size=300), max_size=2)):
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="a.bin")
    if draw(st.booleans()):
        msg.add_attachment(draw(st.builds(_as_message, bodies)))
    for number, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_{number}")  # else the generator draws one with `random`
    try:
        return msg.as_bytes()
    except Exception:  # some header values it accepts it cannot write back; those are no messages
        reject()


def _as_message(body: str) -> EmailMessage:
    inner = EmailMessage()
    inner["Subject"] = "Our proposal"
    inner.set_content(body)
    return inner


def _check(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        inbound = parse(data)
        result = classify(data)
    assert isinstance(inbound, Inbound)
    assert isinstance(result, Classification)
    assert isinstance(result.kind, Kind)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # the last-resort paths stayed unused
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.evidence.items())
    assert classify(data) == result


@_SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes(caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    _check(data, caplog)


@_SETTINGS
@given(messages)
def test_any_mime_structure(caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    _check(data, caplog)


@_SETTINGS
@given(email_messages())
def test_any_email_message(caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    _check(data, caplog)


@pytest.fixture(scope="module")
def real_mail() -> list[bytes]:
    corpus.require()
    return [case.raw() for case in corpus.all_cases()[::7]]


@_SETTINGS
@given(st.data())
def test_damaged_real_mail(caplog: pytest.LogCaptureFixture, real_mail: list[bytes], data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(real_mail))
    cut = data.draw(st.integers(0, len(original)))
    noise = data.draw(st.binary(max_size=40))
    at = data.draw(st.integers(0, cut))
    _check(original[:at] + noise + original[at:cut], caplog)


# words of the return-date cues and dates of the languages read, for texts that reach the date reading
_DATE_WORDS = st.sampled_from([
    "back on", "until", "through", "from 1 to", "bis", "bis einschließlich", "ab dem", "wieder", "jusqu'au", "inclus",
    "hasta el", "fino al", "tot en met", "até", "do", "till och med", "まで", "より出社", "至", "返回", "까지", "복귀", "तक",
    "12月18日", "21.12.", "18. Dezember", "Monday", "31 février", "99.99.", "13月45日", "२१ दिसंबर", "\n", ", ", " ",
])
texts = st.lists(st.one_of(_DATE_WORDS, st.text(max_size=12)), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts, st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1)))
@example("I am out until 5 January 2026 and back on 1 February 2026.", dt.datetime(2024, 12, 5, 9))  # a day back counted from a far end
def test_a_return_date_is_after_the_notice_and_within_a_year_or_so(text: str, received: dt.datetime) -> None:
    day = auto.return_date(text, received.replace(tzinfo=dt.UTC))
    assert day is None or received.date() < day <= received.date() + dt.timedelta(days=403)
