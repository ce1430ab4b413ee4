"""Mail that lists send: a list's or a bulk sender's traffic (newsletters, marketing), and a list
server's refusal of our message. Pure: no I/O.

A lead's address may be a mailing list (sales@, info@ run by fml, ezmlm, Mailman, Sympa ...). Such
a list refuses a message from a non-member, or one it takes for a loop, with a notice that has no
delivery-status part, comes from the list's own administrative address (owner-sales@,
sales-admin@, sales-request@ ...) and says in a line or two why. A person's answer that a list
relays comes from the person, so it is never taken for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from outreach.mail import bounce_reasons as reasons
from outreach.mail import inbound_mime as mime
from outreach.mail import vocabulary

# the administrative addresses of a list, and the addresses list software answers from
_ADMIN = re.compile(
    r"^(owner-[^@]+|[^@]+-(owner|admin|request|bounces?)|majordomo|listserv|listproc|mailman|sympa|ecartis|fml)@",
    re.IGNORECASE,
)
# what a list's refusal says: not a member, not allowed to post, rejected, a loop
_REFUSED = re.compile(
    r"\bnot (a )?member|\bnon-?members?\b|\bonly (list )?members\b|\bmembers only\b|"
    r"\bnot (allowed|authori[sz]ed|permitted) to (post|send|write)|\b(rejected|refused|denied|discarded)\b|"
    r"\bloop (alert|back|detected|warning)|\bduplicated? message-id|\bsecurity alert\b|\b(list|ML) is closed\b",
    re.IGNORECASE,
)
_HEAD = 1000  # characters of the notice's text in which it says why: what follows is our message returned
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class Refusal:
    """A list server's notice that it did not take our message."""

    cause: reasons.Reason
    recipients: tuple[str, ...]  # the list's address, which is the address we wrote to
    said: str  # the words that say it
    sender: str


def bulk(msg: Message) -> dict[str, str] | None:
    """Evidence that a list or a bulk sender sent the message (List-Id, List-Unsubscribe, List-Post,
    'Precedence: list|bulk|junk'), or None: a newsletter, marketing, a list's traffic. Its
    'unsubscribe' is a footer's, never a person's request."""
    for name in vocabulary.LIST:
        if msg.get(name) is not None:
            return {"header": name, "value": mime.header(msg, name)[:100]}
    precedence = mime.header(msg, vocabulary.PRECEDENCE).lower()
    return {"header": vocabulary.PRECEDENCE, "value": precedence} if precedence in vocabulary.LIST_PRECEDENCE else None


def refusal(msg: Message, subject: str, text: str) -> Refusal | None:
    """The list server's refusal this message is, or None: it comes from a list's administrative
    address, bears a list server's headers, and its subject or first lines say it refused."""
    senders = mime.addresses(msg, "From")
    if not senders or not _ADMIN.match(senders[0]):
        return None
    if not any(msg.get(name) is not None for name in (*vocabulary.LIST, *vocabulary.LIST_SERVER)):
        return None
    head = f"{subject}\n{text[:_HEAD]}"
    said = _REFUSED.search(head)
    if said is None:
        return None
    cause = reasons.reason_of(None, "", head)
    if cause is reasons.Reason.UNDEFINED:
        cause = reasons.Reason.REJECTED
    ours = {*senders, *mime.addresses(msg, "To", "Cc")}
    named = [*_ADDRESS.findall(text[:_HEAD]), *_ADDRESS.findall(mime.header(msg, "List-Post"))]
    recipients = tuple(a.lower() for a in named if a.lower() not in ours)[:1]
    line = next((line.strip() for line in head.splitlines() if said.group(0) in line), said.group(0))
    return Refusal(cause, recipients, line[:200], senders[0])
