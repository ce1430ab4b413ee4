"""Signed unsubscribe links (RFC 8058 one-click): nobody can unsubscribe someone else by guessing.

A token names an enrollment and the time the link was made, with an HMAC over both; it carries
no address, so a link seen in a log or a forwarded email says nothing about whom it was sent to.
It works for `VALID_FOR`. Tokens made before, `<payload>.<mac>` with the address and enrollment
in readable JSON, are still verified (their age is judged from the enrollment, see `optout`).
Pure: no I/O, the time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass

from outreach.errors import InputError, Location, Problem

VALID_FOR = dt.timedelta(days=400)  # a year of keeping an old email, and some
_VERSION = 1
_PAYLOAD = struct.Struct(">BQq")  # version, enrollment id, made at (Unix seconds)
_MAC_BYTES = 16
_PURPOSE = b"outreach unsubscribe\x00"  # this key signs nothing else in this form


@dataclass(frozen=True)
class LinkToken:
    enrollment_id: int
    made_at: dt.datetime


@dataclass(frozen=True)
class LegacyToken:
    """A token from before links were opaque: it names the address and never expired."""

    email: str
    enrollment_id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


def _mac(secret: str, data: bytes) -> bytes:
    if not secret:
        raise ValueError("no secret key to sign with")
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(secret: str, enrollment_id: int, made_at: dt.datetime) -> str:
    payload = _PAYLOAD.pack(_VERSION, enrollment_id, int(made_at.timestamp()))
    return _b64(payload + _mac(secret, _PURPOSE + payload))


def verify(secret: str, token: str) -> LinkToken | LegacyToken:
    """What a token names; InputError if it was not made with this key."""
    try:
        return _verify_legacy(secret, token) if "." in token else _verify(secret, token)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error, struct.error) as exc:
        raise InputError(Problem(Location("unsubscribe link"), "this link is not valid; it may have been cut or altered")) from exc


def _verify(secret: str, token: str) -> LinkToken:
    data = _unb64(token)
    payload, mac = data[: _PAYLOAD.size], data[_PAYLOAD.size :]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(secret, _PURPOSE + payload)):
        raise ValueError("bad signature")
    version, enrollment_id, made_at = _PAYLOAD.unpack(payload)
    if version != _VERSION:
        raise ValueError(f"token version {version}")
    return LinkToken(enrollment_id, dt.datetime.fromtimestamp(made_at, dt.UTC))


def _verify_legacy(secret: str, token: str) -> LegacyToken:
    payload, _, mac = token.partition(".")
    if not hmac.compare_digest(_unb64(mac), _mac(secret, payload.encode("ascii"))):
        raise ValueError("bad signature")
    data = json.loads(_unb64(payload))
    return LegacyToken(str(data["e"]), int(data["n"]))


def expired(made_at: dt.datetime, now: dt.datetime) -> bool:
    return now - made_at > VALID_FOR


def link(base_url: str, secret: str, enrollment_id: int, made_at: dt.datetime) -> str:
    return f"{base_url.rstrip('/')}/u/{sign(secret, enrollment_id, made_at)}"
