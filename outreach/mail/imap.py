"""IMAP at the edge: a copy in Sent, the Sent-folder check before a resend, the reply check before a follow-up.

`MailStore` is what the rest of the code needs; `ImapStore` does it with imapclient, and
`StubStore` in memory. One factory (`connect`) makes every connection, the poller's too.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import ImapConfig
from outreach.mail.transport import TemporaryFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundMessage:
    folder: str
    uid: int
    message_id: str | None
    sender: str
    subject: str


class MailStore(Protocol):
    def append_sent(self, raw: bytes, when: dt.datetime) -> None: ...

    def append_draft(self, raw: bytes, when: dt.datetime) -> None: ...

    def sent_has(self, message_id: str) -> bool: ...

    def replies(self, message_ids: Sequence[str], from_address: str) -> list[FoundMessage]: ...

    def close(self) -> None: ...


def _or(terms: list[list[Any]]) -> list[Any]:
    """IMAP SEARCH criteria: OR t1 (OR t2 (OR t3 ...))"""
    if len(terms) == 1:
        return terms[0]
    return ["OR", terms[0], _or(terms[1:])]


def connect(config: ImapConfig, timeout: float) -> IMAPClient:
    """A connection, secured as configured and logged in."""
    client = IMAPClient(config.host, port=config.port, ssl=config.security == "tls", timeout=timeout)
    if config.security == "starttls":
        client.starttls()
    login(client, config.username or "", config.password() or "")
    return client


def login(client: IMAPClient, username: str, password: str) -> None:
    """LOGIN where the name and password are ASCII, as RFC 3501 has its quoted strings; otherwise
    AUTHENTICATE PLAIN, whose strings are UTF-8 (RFC 4616): a password such as 'pässwörd' cannot
    be sent by LOGIN at all."""
    if username.isascii() and password.isascii():
        client.login(username, password)
        return
    if not client.has_capability("AUTH=PLAIN"):
        raise LoginError("the server offers no AUTHENTICATE PLAIN, which a user name or password with non-ASCII characters needs; use an ASCII password for this mailbox")
    client.plain_login(username, password)


class ImapStore:
    def __init__(self, config: ImapConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self.timeout = timeout
        self._client: IMAPClient | None = None

    def _create_client(self) -> IMAPClient:
        return connect(self.config, self.timeout)

    def _connected(self) -> IMAPClient:
        if self._client is not None:
            try:
                self._client.noop()
                return self._client
            except (IMAPClientError, OSError):
                self._drop()
        try:
            self._client = self._create_client()
        except (IMAPClientError, OSError) as exc:
            raise TemporaryFailure(f"IMAP {self.config.host}:{self.config.port}: {exc}") from exc
        return self._client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                pass

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn(self._connected())
        except (IMAPClientError, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"IMAP {what} on {self.config.host}:{self.config.port} failed: {exc}") from exc

    def append_sent(self, raw: bytes, when: dt.datetime) -> None:
        self._run("APPEND", lambda c: c.append(self.config.sent_folder, raw, flags=[b"\\Seen"], msg_time=when))

    def append_draft(self, raw: bytes, when: dt.datetime) -> None:
        self._run("APPEND", lambda c: c.append(self.config.drafts_folder, raw, flags=[b"\\Draft", b"\\Seen"], msg_time=when))

    def sent_has(self, message_id: str) -> bool:
        def search(client: IMAPClient) -> bool:
            client.select_folder(self.config.sent_folder, readonly=True)
            return bool(client.search(["HEADER", "Message-ID", message_id]))

        return bool(self._run("SEARCH Sent", search))

    def replies(self, message_ids: Sequence[str], from_address: str) -> list[FoundMessage]:
        if not message_ids:
            return []

        def search(client: IMAPClient) -> list[FoundMessage]:
            client.select_folder("INBOX", readonly=True)
            thread = _or([["HEADER", header, mid] for mid in message_ids for header in ("In-Reply-To", "References")])
            uids = client.search(["FROM", from_address, thread])
            if not uids:
                return []
            found = []
            for uid, data in client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT)]"]).items():
                # servers name the part as they like (pymap sorts the field names): take it by prefix
                part = next(value for key, value in data.items() if key.startswith(b"BODY[HEADER.FIELDS"))
                headers = email.message_from_bytes(part, policy=email.policy.default)
                found.append(FoundMessage("INBOX", uid, headers.get("Message-ID"), str(headers.get("From", "")), str(headers.get("Subject", ""))))
            return found

        return list(self._run("SEARCH INBOX", search))

    def close(self) -> None:
        self._drop()


@dataclass
class StubStore:
    """Folders in memory, for tests without a server."""

    sent: list[bytes] = field(default_factory=list)
    inbox: list[bytes] = field(default_factory=list)
    drafts: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def append_sent(self, raw: bytes, when: dt.datetime) -> None:
        with self._lock:
            self.sent.append(raw)

    def append_draft(self, raw: bytes, when: dt.datetime) -> None:
        with self._lock:
            self.drafts.append(raw)

    def sent_has(self, message_id: str) -> bool:
        return any(email.message_from_bytes(raw).get("Message-ID") == message_id for raw in self.sent)

    def replies(self, message_ids: Sequence[str], from_address: str) -> list[FoundMessage]:
        found = []
        for uid, raw in enumerate(self.inbox, start=1):
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            refs = f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}"
            if from_address.lower() in str(msg.get("From", "")).lower() and any(mid in refs for mid in message_ids):
                found.append(FoundMessage("INBOX", uid, msg.get("Message-ID"), str(msg.get("From")), str(msg.get("Subject"))))
        return found

    def close(self) -> None:
        pass
