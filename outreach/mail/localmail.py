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
import re
import tempfile
import threading
from argparse import Namespace
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from contextlib import AsyncExitStack
from mailbox import MaildirMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from proxyprotocol.version import ProxyProtocolVersion
from pymap.backend.maildir import Config, Identity, Login
from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import Maildir, MailboxData
from pymap.concurrent import Subsystem
from pymap.frozen import frozendict
from pymap.imap import IMAPServer
from pymap.interfaces.login import IdentityInterface
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import FetchRequirement
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

from outreach.clock import Clock, SystemClock

__all__ = ["CATCH_ALL", "FOLDERS", "LocalMail"]

FOLDERS = ("INBOX", "Sent", "Drafts")
CATCH_ALL = "catch-all"  # the account whose INBOX keeps mail for addresses that are not users
HOSTNAME = "localmail"  # how both servers name themselves in greetings

_T = TypeVar("_T")
_LINE_END = re.compile(rb"\r?\n")


class _Readable(Protocol):
    def read(self, size: int | None = None, /) -> bytes: ...


class _StoredMessage(MaildirMessage):
    """A maildir file served as stored, with the CRLF line ends IMAP requires.

    pymap would serve the stdlib's re-serialisation instead, which ends lines with LF and
    refolds long headers (References, Subject), so FETCH would not return what was APPENDed.
    The file itself is exact apart from its LF line ends, as in Dovecot's maildirs.
    """

    def __init__(self, file: _Readable) -> None:
        super().__init__()
        self._raw = _LINE_END.sub(b"\r\n", file.read())

    def __bytes__(self) -> bytes:
        return self._raw


class _Maildir(Maildir):
    def __init__(self, dirname: str, create: bool = True) -> None:
        super().__init__(dirname, factory=_StoredMessage, create=create)


class _Identity(Identity):
    def _load_maildir(self, mailbox_path: str) -> tuple[Maildir, MaildirLayout[Any]]:
        """pymap's own, with `_Maildir` in place of its Maildir for the INBOX and every folder."""
        full_path = str(Path(self.config.base_dir, mailbox_path))
        layout = MaildirLayout.get(full_path, self.config.layout, _Maildir)
        return _Maildir(full_path, create=not Path(full_path).exists()), layout


class _Login(Login):
    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> Identity:
        identity = await super().authorize(authenticated, authzid)
        return _Identity(self.config, self.tokens, identity.name, None, identity.roles)


class _Corked:
    """A StreamWriter that sends each IMAP response in one piece, when pymap drains it.

    pymap writes a response in fragments (`* 1 FETCH (`, `FLAGS ()`, `)`), each its own TCP
    segment. imapclient's `idle_check` reads without blocking and aborts on a partial line
    ("unterminated line"), so an IDLE client would fail at random; Dovecot sends whole lines.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        self._writer.write(bytes(self._pending))
        self._pending.clear()
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


class _Config(Config):
    @property
    def greeting(self) -> bytes:
        """A fixed name: pymap's default asks DNS for this host's FQDN, which can hang offline."""
        return b"Server ready " + HOSTNAME.encode()


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
        self._config: _Config | None = None
        self._login: _Login | None = None
        self._inboxes: dict[str, MailboxData] = {}  # only touched on the servers' loop

    def start(self, timeout: float = 10.0) -> Self:
        """Start both servers; returns once they accept connections, or raises what stopped them."""
        if self._thread is not None:
            raise RuntimeError("LocalMail is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        _check_same_filesystem(self.root)
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
        self._thread = self._loop = self._stop = self._config = self._login = self._ports = None
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
                await self._open_store()
                imap = await asyncio.start_server(self._imap_callback(), self.host, self._wanted_ports[0])
                await stack.enter_async_context(imap)
                smtp = await loop.create_server(lambda: SMTP(_Handler(self), hostname=HOSTNAME, enable_SMTPUTF8=True), self.host, self._wanted_ports[1])
                await stack.enter_async_context(smtp)
                ready.set_result((_port(imap), _port(smtp)))
                await self._stop.wait()
        except BaseException as exc:
            if ready.done():
                raise
            ready.set_exception(exc)  # start() raises it in the caller's thread

    async def _open_store(self) -> None:
        """Configure pymap, then create or update the accounts and their folders."""
        self._config = config = _Config(
            Namespace(passlib_cfg=None, proxy_protocol=None),  # what pymap would read from its command line
            host=self.host,
            port=self._wanted_ports[0],
            base_dir=str(self.root),
            layout="++",
            colon=None,
            cpu_subsystem=Subsystem.for_asyncio(),  # pymap's default is a thread pool nobody shuts down
            tls_enabled=False,
            reject_dnsbl=False,
            invalid_user_sleep=0.0,
            hash_context=BuiltinHash(rounds=1000),  # the files under root hold no password, and LOGIN stays fast
        )
        self._login = _Login(config)
        passwords = Passwords(config)
        accounts: dict[str, str | None] = {**self.users, CATCH_ALL: None}  # no password: nobody logs in as catch-all
        for name, password in accounts.items():
            identity = self._identity(name)
            hashed = await passwords.hash_password(password) if password is not None else None
            await identity.set(UserMetadata(config, name, password=hashed, params=frozendict({"mailbox_path": name})))
            async with identity.new_session() as session:
                for folder in FOLDERS:
                    if folder != "INBOX":
                        try:
                            await session.mailbox_set.add_mailbox(folder)
                        except KeyError:
                            pass  # made by an earlier run
                    await session.mailbox_set.get_mailbox(folder)  # fixes its UIDVALIDITY now

    def _identity(self, name: str) -> _Identity:
        assert self._config is not None and self._login is not None
        return _Identity(self._config, self._login.tokens, name, None, frozenset())

    def _imap_callback(self) -> Any:
        assert self._config is not None and self._login is not None
        server = IMAPServer(self._login, self._config)

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo) -> None:
            await server(reader, _Corked(writer), sock_info)  # type: ignore[arg-type]

        return ProxyProtocolReader(ProxyProtocolVersion.get(None)).get_callback(connection)

    async def _mailbox(self, user: str, folder: str) -> MailboxData:
        if user != CATCH_ALL and user not in self.users:
            raise KeyError(f"{user} is not a user of this LocalMail")
        async with self._identity(user).new_session() as session:
            mailbox = await session.mailbox_set.get_mailbox(folder)
        assert isinstance(mailbox, MailboxData)
        return mailbox

    async def _deliver(self, raw: bytes, recipients: list[str]) -> None:
        for recipient in dict.fromkeys(r.lower() for r in recipients):
            user, copy = (recipient, raw) if recipient in self.users else (CATCH_ALL, b"X-Original-To: " + recipient.encode() + b"\r\n" + raw)
            if user not in self._inboxes:
                # kept: pymap's get_mailbox re-reads the whole folder, and append does not need that
                self._inboxes[user] = await self._mailbox(user, "INBOX")
            await self._inboxes[user].append(AppendMessage(copy, self.clock.now()), recent=True)

    async def _messages(self, user: str, folder: str) -> list[bytes]:
        mailbox = await self._mailbox(user, folder)
        found = sorted([m async for m in mailbox.messages()], key=lambda m: m.uid)
        return [bytes((await m.load_content(FetchRequirement.CONTENT)).content) for m in found]


class _Handler:
    """aiosmtpd's hooks: every sender and recipient is accepted, and DATA delivers."""

    def __init__(self, mail: LocalMail) -> None:
        self._mail = mail

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await self._mail._deliver(envelope.original_content or b"", list(envelope.rcpt_tos))
        return "250 2.0.0 Ok: delivered"


def _check_same_filesystem(root: Path) -> None:
    """pymap writes each index file (users, UID lists) in the temp dir and os.rename()s it into
    place, which fails across filesystems (EXDEV), e.g. with /tmp on tmpfs: say so up front."""
    temp = Path(tempfile.gettempdir())
    if root.stat().st_dev != temp.stat().st_dev:
        raise RuntimeError(f"{root} is not on the filesystem of the temp dir {temp}, which pymap needs; put it there or point TMPDIR at {root}'s filesystem")


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
