"""Sending mail: the interface, and the errors every transport translates its own into.

Implementations live in outreach/mail/transports/: smtp (aiosmtplib) and stub (in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Protocol

from outreach.errors import OutreachError


class SendError(OutreachError):
    """Sending failed. `code` and `reply` are the server's, when it answered."""

    def __init__(self, message: str, *, code: int | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


class TemporaryFailure(SendError, ConnectionError):
    """Try again later: a 4xx reply, a dropped connection, a timeout."""


class RecipientRefused(SendError):
    """The server refused the recipient for good (5xx on RCPT): a hard bounce."""

    def __init__(self, message: str, *, recipient: str, code: int | None = None, reply: str = "") -> None:
        super().__init__(message, code=code, reply=reply)
        self.recipient = recipient


class PermanentFailure(SendError):
    """Any other 5xx: this message will not go through as it is."""


@dataclass(frozen=True)
class Accepted:
    code: int
    reply: str


class Transport(Protocol):
    """Sends from one mailbox; keeps its connection open between messages."""

    def send(self, message: Message, sender: str, recipients: list[str]) -> Accepted: ...

    def close(self) -> None: ...
