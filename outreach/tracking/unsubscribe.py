"""Signed unsubscribe links (RFC 8058 one-click): nobody can unsubscribe someone else by guessing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from outreach.errors import InputError, Location, Problem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, email: str, enrollment_id: int) -> str:
    if not secret:
        raise ValueError("no secret key to sign with")
    payload = _b64(json.dumps({"e": email, "n": enrollment_id}, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{_b64(mac)}"


def verify(secret: str, token: str) -> tuple[str, int]:
    """The (email, enrollment id) a token was made for; InputError if it was not made by us."""
    payload, _, mac = token.partition(".")
    try:
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
        if not mac or not hmac.compare_digest(expected, _unb64(mac)):
            raise ValueError("bad signature")
        data = json.loads(_unb64(payload))
        return str(data["e"]), int(data["n"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(Problem(Location("unsubscribe link"), "this link is not valid; it may have been cut or altered")) from exc


def link(base_url: str, secret: str, email: str, enrollment_id: int) -> str:
    return f"{base_url.rstrip('/')}/u/{sign(secret, email, enrollment_id)}"
