"""Composing a message: MIME, threading headers, one-click unsubscribe. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from outreach.errors import InputError, Location, Problem
from outreach.mail.templates import Rendered

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
POLICY = SMTP.clone(max_line_length=998)  # no folding of ordinary headers; 998 is the hard limit
_RE = re.compile(r"^\s*((re|aw|sv|antw|fwd?|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def clean_header(value: str, what: str) -> str:
    """A header value from data: refused if it holds control characters (no header injection)."""
    if CONTROL.search(value):
        raise InputError(Problem(Location(what), f"{value!r} holds control characters and cannot go into a header"))
    return value


def make_message_id(domain: str) -> str:
    """A globally unique Message-ID on the sending mailbox's domain."""
    return f"<{uuid.uuid4().hex}@{domain.lower()}>"


def reply_subject(subject: str) -> str:
    """'Re: ' once, whatever prefixes the original had."""
    return "Re: " + _RE.sub("", subject).strip()


def base_subject(subject: str) -> str:
    return _RE.sub("", subject).strip().lower()


@dataclass(frozen=True)
class Party:
    address: str
    name: str = ""

    def header(self, what: str) -> Address:
        clean_header(self.name, what)
        local, _, domain = self.address.rpartition("@")
        return Address(display_name=self.name, username=clean_header(local, what), domain=clean_header(domain, what))


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
) -> EmailMessage:
    """A ready-to-send message: text (+ html alternative), threaded, with List-Unsubscribe."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender.header("From")
    msg["To"] = recipient.header("To")
    msg["Subject"] = clean_header(subject, "Subject")
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
        msg[name] = clean_header(value, name)
    msg.set_content(rendered.text)
    if rendered.html:
        msg.add_alternative(rendered.html, subtype="html")
    return msg
