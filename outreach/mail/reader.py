"""Reading a mailbox's folders over IMAP for the poller: folder state, new UIDs, headers, bodies, IDLE.

One `FolderReader` is one connection, used by one poller thread. Every server error or dropped
connection comes out as `TemporaryFailure`; the poller then drops the reader and makes a new one
after a backoff. Nothing here knows about the database.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response

from outreach.config import ImapConfig
from outreach.mail import vocabulary
from outreach.mail.imap import connect
from outreach.mail.transport import TemporaryFailure

log = logging.getLogger(__name__)

# What the poller reads of every new message; a body is fetched only for what these say may concern us.
HEADER_FIELDS = tuple(name.upper() for name in vocabulary.FETCHED)
HEADER_PART = f"BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})]"
HEADER_ITEMS = (HEADER_PART, "RFC822.SIZE", "INTERNALDATE")

RawFetch = list[Any]  # a FETCH's untagged responses as read off the connection (imaplib's form), not yet parsed


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    header: bytes
    size: int
    internal_date: dt.datetime | None


class FolderReader:
    def __init__(self, config: ImapConfig, *, timeout: float = 30.0, factory: Callable[[ImapConfig, float], IMAPClient] = connect) -> None:
        self.config = config
        self.timeout = timeout
        self._factory = factory
        self._client: IMAPClient | None = None
        self.folder: str | None = None  # the selected folder, and its UIDVALIDITY
        self.uidvalidity: int | None = None

    def _call(self, what: str, fn: Callable[[IMAPClient], Any]) -> Any:
        try:
            if self._client is None:
                self._client = self._factory(self.config, self.timeout)
            return fn(self._client)
        except (IMAPClientError, OSError, socket.timeout) as exc:
            self.close()
            raise TemporaryFailure(f"IMAP {what} on {self.config.host}:{self.config.port} failed: {exc}") from exc

    @property
    def can_idle(self) -> bool:
        return bool(self._call("CAPABILITY", lambda c: c.has_capability("IDLE")))

    def open(self, folder: str) -> FolderState:
        """Select a folder (read-only: the poller never changes flags) and say where it stands."""

        def select(client: IMAPClient) -> FolderState:
            info = client.select_folder(folder, readonly=True)
            uidnext = info.get(b"UIDNEXT")
            if uidnext is None:  # a server that does not volunteer it
                uidnext = client.folder_status(folder, [b"UIDNEXT"])[b"UIDNEXT"]
            return FolderState(int(info[b"UIDVALIDITY"]), int(uidnext), int(info.get(b"EXISTS", 0)))

        state: FolderState = self._call(f"SELECT {folder}", select)
        self.folder, self.uidvalidity = folder, state.uidvalidity
        return state

    def status(self, folder: str) -> FolderState:
        """Where a folder stands, without selecting it: cheap however large it is (SELECT is not, on maildirs)."""

        def status(client: IMAPClient) -> FolderState:
            info = client.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"])
            return FolderState(int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]), int(info.get(b"MESSAGES", 0)))

        return self._call(f"STATUS {folder}", status)  # type: ignore[no-any-return]

    def refresh(self) -> None:
        """NOOP: the server brings the selected folder's view up to date (new messages become visible)."""
        self._call("NOOP", lambda c: c.noop())

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid` in the open folder (`n:*` also names the last message, even below n)."""
        uids = self._call("UID SEARCH", lambda c: c.search(["UID", f"{last_uid + 1}:*"]))
        return sorted(u for u in uids if u > last_uid)

    def uids_since(self, day: dt.date) -> list[int]:
        return sorted(self._call("SEARCH SINCE", lambda c: c.search(["SINCE", day])))

    def raw_headers(self, uids: Sequence[int]) -> RawFetch:
        """The header FETCH as read, for `parse_headers`. Reading it is the connection's work; parsing it
        (imapclient's lexer, three times the reading) is CPU work that a worker process can take."""
        if not uids:
            return [None]
        command = (",".join(str(uid) for uid in uids), f"({' '.join(HEADER_ITEMS)})")

        def fetch(client: IMAPClient) -> RawFetch:
            # imapclient's fetch is imaplib's UID FETCH on this connection, then parse_fetch_response: the first half only
            typ, data = client._imap.uid("FETCH", *command)
            if typ != "OK":
                raise IMAPClientError(f"FETCH failed: {data!r}")
            return data  # type: ignore[no-any-return]

        return self._call("FETCH headers", fetch)  # type: ignore[no-any-return]

    def bodies(self, uids: Sequence[int], limit: int) -> dict[int, bytes]:
        """Whole messages, or their first `limit` bytes: enough for any reply or report, not a 20 MB attachment."""
        if not uids:
            return {}
        data = self._call("FETCH bodies", lambda c: c.fetch(list(uids), [f"BODY.PEEK[]<0.{limit}>"]))
        out = {}
        for uid, item in data.items():
            part = next((value for key, value in item.items() if isinstance(key, bytes) and key.startswith(b"BODY[]")), None)
            if part is not None:
                out[uid] = bytes(part)
        return out

    def idle(self, seconds: float) -> bool:
        """Wait in IDLE on the open folder; True when the server announced something new."""

        def wait(client: IMAPClient) -> bool:
            client.idle()
            try:
                responses = client.idle_check(timeout=seconds)
            finally:
                client.idle_done()
            return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

        return bool(self._call("IDLE", wait))

    def close(self) -> None:
        client, self._client = self._client, None
        self.folder = self.uidvalidity = None
        if client is not None:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                try:
                    client.shutdown()
                except (IMAPClientError, OSError):
                    pass


def parse_headers(data: RawFetch, uids: Sequence[int]) -> list[Fetched]:
    """A header FETCH's responses (`FolderReader.raw_headers`) as `Fetched`, in UID order. Responses
    the server volunteered (a flag changed elsewhere) carry no UID and are left out: keyed by UID,
    as imapclient's fetch keys them, one would stand for whichever asked-for UID equals its number."""
    asked = set(uids)
    fetched = []
    for item in parse_fetch_response(data, True, False).values():  # keyed by sequence number; the UID is an item
        uid = item.get(b"UID")
        if uid not in asked:
            continue
        when = item.get(b"INTERNALDATE")
        if isinstance(when, dt.datetime) and when.tzinfo is None:
            when = when.astimezone()  # imapclient gives local naive times by default
        header = next((value for key, value in item.items() if isinstance(key, bytes) and key.startswith(b"BODY[HEADER")), b"")  # servers name the part as they like
        fetched.append(Fetched(uid, bytes(header or b""), int(item.get(b"RFC822.SIZE") or 0), when.astimezone(dt.timezone.utc) if isinstance(when, dt.datetime) else None))
    return sorted(fetched, key=lambda f: f.uid)
