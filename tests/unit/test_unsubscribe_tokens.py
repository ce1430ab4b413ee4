"""Unsubscribe tokens: opaque, signed, dated; the links already sent in the older form still verify."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.errors import InputError
from outreach.tracking.unsubscribe import VALID_FOR, LegacyToken, LinkToken, expired, link, sign, verify

UTC = dt.UTC
MADE = dt.datetime(2026, 11, 24, 9, 30, 12, tzinfo=UTC)
moments = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2200, 1, 1), timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0))
ids = st.integers(1, 2**63 - 1)


def legacy_sign(secret: str, email: str, enrollment_id: int) -> str:
    """The form of the links in emails sent before tokens were opaque."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = b64(json.dumps({"e": email, "n": enrollment_id}, separators=(",", ":")).encode())
    return f"{payload}.{b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16])}"


@given(ids, moments)
def test_a_token_names_the_enrollment_and_when_it_was_made(enrollment: int, made: dt.datetime) -> None:
    token = sign("secret", enrollment, made)
    assert verify("secret", token) == LinkToken(enrollment, made)
    assert re.fullmatch(r"[A-Za-z0-9_-]{44}", token)  # the same opaque shape whoever it was sent to
    assert link("https://o.example/", "secret", enrollment, made) == f"https://o.example/u/{token}"


@given(ids, moments, st.data())
def test_a_changed_token_is_refused(enrollment: int, made: dt.datetime, data: st.DataObject) -> None:
    token = sign("secret", enrollment, made)
    with pytest.raises(InputError, match="not valid"):
        verify("other-secret", token)
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InputError, match="not valid"):
        verify("secret", base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode())


@given(st.text(max_size=120))
def test_any_text_is_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(InputError, match="not valid"):
        verify("secret", text)


def test_a_cut_token_is_refused() -> None:
    token = sign("secret", 7, MADE)
    for end in range(len(token)):
        with pytest.raises(InputError, match="not valid"):
            verify("secret", token[:end])


def test_the_address_is_nowhere_in_a_token() -> None:
    token = sign("secret", 7, MADE)
    assert "@" not in base64.urlsafe_b64decode(token + "=").decode("latin-1")
    assert len(base64.urlsafe_b64decode(token + "=")) == 33  # version, id, time and the MAC: nothing else fits


@given(st.emails(), ids)
def test_links_already_sent_in_the_older_form_still_verify(email: str, enrollment: int) -> None:
    token = legacy_sign("secret", email, enrollment)
    assert verify("secret", token) == LegacyToken(email, enrollment)
    with pytest.raises(InputError, match="not valid"):
        verify("other-secret", token)
    payload, _, mac = token.partition(".")
    with pytest.raises(InputError, match="not valid"):
        verify("secret", f"{payload}x.{mac}")


def test_a_link_works_for_four_hundred_days() -> None:
    assert VALID_FOR == dt.timedelta(days=400)
    assert not expired(MADE, MADE)
    assert not expired(MADE, MADE + VALID_FOR)
    assert expired(MADE, MADE + VALID_FOR + dt.timedelta(seconds=1))


def test_signing_without_a_key_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="no secret key"):
        sign("", 1, MADE)
