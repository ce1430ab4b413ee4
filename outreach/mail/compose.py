"""Composing a message: MIME, threading headers, one-click unsubscribe. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.charset import QP, Charset
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from typing import Any

from outreach.errors import InputError, Location, Problem
from outreach.mail.templates import Rendered

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_LINE = 998  # octets of a header line, without its CRLF (RFC 5322 2.1.1)
FOLD_AT = 78  # where encoded words fold (RFC 5322 2.1.1's "should")
MAX_WORD = 75  # characters of one encoded word (RFC 2047 2)


class _Policy(Compat32):
    """The classic MIME classes write headers as given (after our checks) instead of parsing each
    one through the header registry, which made composing cost more than sending. A plain ASCII
    value that fits stays on one line; encoded words (see `_encoded`) fold at FOLD_AT. No line
    ever passes MAX_LINE: a value that cannot fold within it (a message id or address longer than
    a line) is refused."""

    def fold(self, name: str, value: Any) -> str:
        if isinstance(value, str) and value.isascii() and "=?" not in value and len(name) + len(value) + 2 <= MAX_LINE:
            return f"{name}: {value}{self.linesep}"
        folded: str = super().fold(name, value)
        _refuse_longer_than_a_line(name, max(len(line.encode()) for line in folded.split(self.linesep)))
        return folded

    def fold_binary(self, name: str, value: Any) -> bytes:
        return self.fold(name, value).encode("ascii")


def _refuse_longer_than_a_line(name: str, longest: int) -> None:
    if longest > MAX_LINE:
        raise InputError(Problem(Location(name), f"the {name} header holds a word too long to fold ({longest} characters on one line; at most {MAX_LINE})"))


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
        """`Name <address>`: the name as it is (quoted if it needs) when it is plain text that fits
        on the line, else in encoded words (RFC 2047)."""
        name, address = clean_header(self.name, what), clean_header(self.address, what)
        value = formataddr((name, address))
        if _plain(name) and "  " not in name and len(what) + len(value) + 2 <= MAX_LINE:  # a phrase reads runs of spaces as one
            return value
        return f"{_encoded(name, what)} <{address}>"


def _plain(value: str) -> bool:
    """Text that reads back as written when put in a header as it is."""
    return value.isascii() and value == value.strip() and "=?" not in value


def _encoded(text: str, name: str) -> str:
    """`text` as RFC 2047 encoded words, each of at most MAX_WORD characters, the first short enough
    to follow `name: ` on its line. Readers join adjacent encoded words without the spaces between
    them, so any text reads back exactly: leading or repeated spaces, line separators, `=?`."""
    first = FOLD_AT - len(name) - 2
    words = _UTF8.header_encode_lines(text, itertools.chain([min(first, MAX_WORD)], itertools.repeat(MAX_WORD)))
    return " ".join(word for word in words if word)  # None: nothing fitted beside a long header name


def _text(value: str, name: str) -> str:
    """An unstructured header's value: as it is when it fits on one line and reads back the same,
    else encoded words, which fold anywhere (a word longer than a line cannot fold otherwise)."""
    if _plain(value) and len(name) + len(value) + 2 <= MAX_LINE:
        return value
    return _encoded(value, name)


def _part(body: str, subtype: str) -> MIMEText:
    charset = "us-ascii" if body.isascii() else _UTF8
    return MIMEText(body, subtype, charset, policy=POLICY)  # type: ignore[arg-type]  # typeshed has str; a Charset is taken too


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
    headers: list[tuple[str, str]] = [
        ("From", sender.header("From")),
        ("To", recipient.header("To")),
        ("Subject", _text(clean_header(subject, "Subject"), "Subject")),
        ("Date", format_datetime(date)),
        ("Message-ID", clean_header(message_id, "Message-ID")),
    ]
    if in_reply_to:
        headers.append(("In-Reply-To", clean_header(in_reply_to, "In-Reply-To")))
    if references:
        headers.append(("References", " ".join(clean_header(r, "References") for r in references)))
    targets = []
    if unsubscribe_url:
        targets.append(f"<{clean_header(unsubscribe_url, 'List-Unsubscribe')}>")
    if unsubscribe_mailto:
        targets.append(f"<{clean_header(unsubscribe_mailto, 'List-Unsubscribe')}>")
    if targets:
        headers.append(("List-Unsubscribe", ", ".join(targets)))
        if unsubscribe_url:
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.extend((name, _text(clean_header(value, name), name)) for name, value in (extra_headers or {}).items())
    for name, value in headers:  # refused here rather than when the message is written out
        _refuse_longer_than_a_line(name, len(name) + 2 + max((len(word) for word in value.split()), default=0))
        msg[name] = value
    return msg
