"""Composing a message: MIME, threading headers, one-click unsubscribe. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email._policybase import Compat32
from email.utils import format_datetime, formataddr

from outreach.errors import InputError, Location, Problem
from outreach.mail.templates import Rendered

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Policy(Compat32):
    """The classic MIME classes write headers as given (after our checks) instead of parsing each
    one through the header registry, which made composing cost more than sending. Plain ASCII
    headers stay on one line up to the hard limit of 998; encoded words fold at 78 (RFC 2047)."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and value.isascii() and len(name) + len(value) + 2 <= 998:
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[no-any-return]


POLICY = _Policy(linesep="\r\n")  # CRLF line ends, as SMTP wants them
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in the raw message, safe through 7-bit relays


def clean_header(value: str, what: str) -> str:
    """A header value from data: refused if it holds control characters (no header injection)."""
    if CONTROL.search(value):
        raise InputError(Problem(Location(what), f"{value!r} holds control characters and cannot go into a header"))
    return value


def make_message_id(domain: str) -> str:
    """A globally unique Message-ID on the sending mailbox's domain."""
    return f"<{uuid.uuid4().hex}@{domain.lower()}>"


@dataclass(frozen=True)
class Party:
    address: str
    name: str = ""

    def header(self, what: str) -> str:
        """`Name <address>`, the name quoted or encoded (RFC 2047) as it needs."""
        return formataddr((clean_header(self.name, what), clean_header(self.address, what)), charset="utf-8")


def _text(value: str, name: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8", header_name=name)


def _part(body: str, subtype: str) -> MIMEText:
    return MIMEText(body, subtype, "us-ascii" if body.isascii() else _UTF8, policy=POLICY)


def compose(
    rendered: Rendered,
    *,
    sender: Party,
    recipient: Party,
    message_id: str,
    date: dt.datetime,
    subject: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Message:
    """A ready-to-send message: text (+ html alternative), threaded, with List-Unsubscribe."""
    if rendered.html:
        # our own boundary: random enough never to occur in a body, and it spares the generator
        # compiling a search for a boundary of its own on every message
        msg: Message = MIMEMultipart("alternative", boundary=f"=_{uuid.uuid4().hex}", policy=POLICY)
        msg.attach(_part(rendered.text, "plain"))
        msg.attach(_part(rendered.html, "html"))
    else:
        msg = _part(rendered.text, "plain")
    msg["From"] = sender.header("From")
    msg["To"] = recipient.header("To")
    msg["Subject"] = _text(clean_header(subject, "Subject"), "Subject")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = clean_header(message_id, "Message-ID")
    if in_reply_to:
        msg["In-Reply-To"] = clean_header(in_reply_to, "In-Reply-To")
    if references:
        msg["References"] = " ".join(clean_header(r, "References") for r in references)
    targets = []
    if unsubscribe_url:
        targets.append(f"<{clean_header(unsubscribe_url, 'List-Unsubscribe')}>")
    if unsubscribe_mailto:
        targets.append(f"<{clean_header(unsubscribe_mailto, 'List-Unsubscribe')}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
        if unsubscribe_url:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (extra_headers or {}).items():
        msg[name] = _text(clean_header(value, name), name)
    return msg
