"""A mail system inside this process: pymap serves IMAP, aiosmtpd takes SMTP, both over maildirs.

It lets the whole pipeline run on one machine with nothing installed: mail sent to the SMTP port
lands in each recipient's INBOX, and the IMAP port serves INBOX, Sent and Drafts as a provider
would, with IDLE. The folders are Dovecot-style maildirs under `root` (`root/<address>/cur`,
`root/<address>/.Sent/cur`, ...), so a person can open the files afterwards, and a restart on the
same root keeps the messages, their UIDs and UIDVALIDITY.

Both servers share one asyncio loop in one background thread: the SMTP handler hands a message
to the store with an `await`, and `stop()` has a single loop to wind down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from outreach.clock import Clock, SystemClock
from outreach.demo._pymap import HOSTNAME, Mailbox, Store, write_in_place

__all__ = ["CATCH_ALL", "FOLDERS", "LocalMail"]

FOLDERS = ("INBOX", "Sent", "Drafts")
CATCH_ALL = "catch-all"  # the account whose INBOX keeps mail for addresses that are not users

_T = TypeVar("_T")


class LocalMail:
    """An IMAP and an SMTP server on `host` over the maildirs under `root`.

    `users` maps each address to its IMAP password; each gets INBOX, Sent and Drafts. A port of 0
    picks a free one: read `imap_port` and `smtp_port` after `start()`. IMAP is plain (no TLS),
    so a client's config uses security "none"; SMTP takes mail from anyone, without AUTH.
    Arrivals are dated (INTERNALDATE) by `clock`: a simulation's clock dates its mail as its own.
    """

    def __init__(self, root: Path, users: Mapping[str, str], *, host: str = "127.0.0.1", imap_port: int = 0, smtp_port: int = 0, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self.clock = clock or SystemClock()
        self.users = {address.lower(): password for address, password in users.items()}
        if CATCH_ALL in self.users:
            raise ValueError(f"{CATCH_ALL!r} is the account for mail to unknown addresses, not a user name")
        self.host = host
        self._wanted_ports = (imap_port, smtp_port)
        self._ports: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._store: Store | None = None
        self._inboxes: dict[str, Mailbox] = {}  # only touched on the servers' loop

    def start(self, timeout: float = 10.0) -> Self:
        """Start both servers; returns once they accept connections, or raises what stopped them."""
        if self._thread is not None:
            raise RuntimeError("LocalMail is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        write_in_place()
        ready: Future[tuple[int, int]] = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), name=f"localmail-{self.root.name}", daemon=True)
        self._thread.start()
        try:
            self._ports = ready.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close both servers and every open connection, and join the thread. Safe to repeat."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"LocalMail did not stop within {timeout} s")
        self._thread = self._loop = self._stop = self._store = self._ports = None
        self._inboxes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def imap_port(self) -> int:
        return self._running_ports()[0]

    @property
    def smtp_port(self) -> int:
        return self._running_ports()[1]

    def deliver(self, raw: bytes, recipients: Iterable[str]) -> None:
        """Put `raw` in each recipient's INBOX, as the SMTP server does with every accepted message.

        An address that is not a user goes to the catch-all INBOX with an `X-Original-To` header
        in front, so mail to outside addresses is kept and can be told apart.
        """
        self._call(self._deliver(raw, list(recipients)))

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """The messages in one folder of `user` (or CATCH_ALL), in UID order, as IMAP serves them."""
        return self._call(self._messages(user.lower(), folder))

    def _running_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise RuntimeError("LocalMail is not running")
        return self._ports

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the servers' loop and wait for it (from any thread but that loop's)."""
        loop = self._loop
        if loop is None or self._ports is None or threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LocalMail is not running" if self._ports is None else "LocalMail's own thread cannot wait on itself")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def _serve(self, ready: Future[tuple[int, int]]) -> None:
        try:
            async with AsyncExitStack() as stack:
                loop = self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                store = self._store = Store(self.root, self.host, self._wanted_ports[0])
                accounts: dict[str, str | None] = {**self.users, CATCH_ALL: None}  # no password: nobody logs in as catch-all
                for name, password in accounts.items():
                    await store.add_account(name, password, FOLDERS)
                imap = await asyncio.start_server(store.imap_connection(), self.host, self._wanted_ports[0])
                await stack.enter_async_context(imap)
                smtp = await loop.create_server(lambda: SMTP(_Handler(self), hostname=HOSTNAME, enable_SMTPUTF8=True), self.host, self._wanted_ports[1])
                await stack.enter_async_context(smtp)
                ready.set_result((_port(imap), _port(smtp)))
                await self._stop.wait()
        except BaseException as exc:
            if ready.done():
                raise
            ready.set_exception(exc)  # start() raises it in the caller's thread

    async def _mailbox(self, user: str, folder: str) -> Mailbox:
        if user != CATCH_ALL and user not in self.users:
            raise KeyError(f"{user} is not a user of this LocalMail")
        assert self._store is not None
        return await self._store.mailbox(user, folder)

    async def _deliver(self, raw: bytes, recipients: list[str]) -> None:
        for recipient in dict.fromkeys(r.lower() for r in recipients):
            user, copy = (recipient, raw) if recipient in self.users else (CATCH_ALL, b"X-Original-To: " + recipient.encode() + b"\r\n" + raw)
            if user not in self._inboxes:
                # kept: pymap's get_mailbox re-reads the whole folder, and append does not need that
                self._inboxes[user] = await self._mailbox(user, "INBOX")
            await Store.append(self._inboxes[user], copy, self.clock.now())

    async def _messages(self, user: str, folder: str) -> list[bytes]:
        return await Store.contents(await self._mailbox(user, folder))


class _Handler:
    """aiosmtpd's hooks: every sender and recipient is accepted, and DATA delivers."""

    def __init__(self, mail: LocalMail) -> None:
        self._mail = mail

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await self._mail._deliver(envelope.original_content or b"", list(envelope.rcpt_tos))
        return "250 2.0.0 Ok: delivered"


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
