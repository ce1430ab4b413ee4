"""Header triage: from a message's few header fields alone, whether its body is worth fetching.

Pure and cheap (tens of microseconds a message): the poller glances at every new message, most
of which are newsletters and other mail that is not ours. The body of what passes is parsed
properly (`inbound`).
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from functools import lru_cache
from typing import NamedTuple

from outreach.db.models import email_domain
from outreach.mail import vocabulary

REPORT_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "bounce", "noreply", "no-reply")
REPORT_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail|notification|report|problem)|returned mail|failure notice|mail delivery|not (be )?delivered|"
    r"nondeliverable|non[- ]?remis|unzustellbar|no entregado|rejected|bounce|abuse report|complaint",
    re.IGNORECASE,
)
AUTO_HEADERS = tuple(name.lower() for name in (vocabulary.AUTO_SUBMITTED, *vocabulary.AUTO_REPLY))
_APPLE_UNSUBSCRIBE = vocabulary.APPLE_UNSUBSCRIBE.lower()
_PEOPLE = {True: frozenset({"from", "reply-to"}), False: frozenset({"to", "cc"})}  # INBOX: who wrote; Sent: to whom
_NONE: frozenset[str] = frozenset()
_FOLD = re.compile(rb"\r?\n[ \t]")


class Glance(NamedTuple):
    """What a message's headers say, read once: enough to tell whether its body is worth fetching."""

    uid: int
    refs: frozenset[str]  # the Message-IDs it answers
    people: frozenset[str]  # INBOX: who wrote it (From, Reply-To); Sent: to whom (To, Cc)
    automatic: bool  # looks like a report, an auto-reply or an opt-out to our mailto:

    @property
    def domains(self) -> set[str]:
        return {email_domain(a) for a in self.people}


def fields(header: bytes) -> list[tuple[str, str]]:
    """A header block as (lower-cased name, value) pairs, in order, folded lines joined: the few
    fields the triage looks at, read without building a message."""
    out = []
    for line in _FOLD.sub(b" ", header).decode("ascii", "replace").split("\n"):
        name, colon, value = line.partition(":")
        name = name.rstrip()
        if colon and name and " " not in name and "\t" not in name:  # not a field: an mbox "From " line, a stray line
            out.append((name.lower(), value.strip()))
    return out


def glance(uid: int, header: bytes, *, inbox: bool) -> Glance:
    first: dict[str, str] = {}  # the first of a repeated field is enough for these tests
    people: list[str] = []
    wanted = _PEOPLE[inbox]
    for name, value in fields(header):
        if name in wanted:
            people.append(value)
        if name not in first:
            first[name] = value
    senders = addresses(tuple(people)) if people else _NONE
    threading = f"{first.get('in-reply-to', '')} {first.get('references', '')}"
    refs = frozenset(ids(threading)) if "<" in threading else _NONE
    return Glance(uid, refs, senders, inbox and (looks_automatic(first, senders) or first.get("subject", "").strip().lower() == "unsubscribe"))


def ids(values: str) -> list[str]:
    """The <Message-IDs> in In-Reply-To and References values."""
    return [f"<{part.split('>')[0]}>" for part in values.split("<")[1:] if ">" in part]


@lru_cache(maxsize=4096)
def addresses(values: tuple[str, ...]) -> frozenset[str]:
    """The addresses in these header values, lower-cased (the same senders come again and again)."""
    try:
        return frozenset(address.lower() for _, address in getaddresses(list(values)) if "@" in address)
    except Exception:  # a mangled address header concerns nobody
        return _NONE


def looks_automatic(first: dict[str, str], senders: frozenset[str]) -> bool:
    """Reports and auto-replies, from the headers alone: worth a body even when they name nobody we know."""
    sender = " ".join(sorted(senders)) if senders else first.get("from", "").lower()
    if not sender:
        return True
    sender = sender.replace("_", "")
    if any(name in sender for name in REPORT_SENDERS):
        return True
    subject = first.get("subject")
    if subject and REPORT_SUBJECT.search(subject) is not None:
        return True
    if "multipart/report" in first.get("content-type", "").lower() or first.get("return-path", "").strip() == "<>":
        return True
    if first.get(vocabulary.JMRP_RECIPIENT.lower()):
        return True  # a complaint in Microsoft's older form: the complained-of message itself
    if any(vocabulary.is_automatic_value(first.get(name)) for name in AUTO_HEADERS):
        return True
    if first.get(_APPLE_UNSUBSCRIBE, "").strip().lower() == "true":
        return True
    return first.get("precedence", "").strip().lower() in vocabulary.AUTOMATIC_PRECEDENCE
