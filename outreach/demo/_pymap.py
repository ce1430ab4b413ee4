"""Everything LocalMail asks of pymap (and of proxy-protocol and pysasl, which pymap's server
takes as arguments), in one place: pymap is used as a library here, not through its command
line, and several of the parts that needs are pymap's own internals. Pinned in pyproject.toml
(pymap 0.36.x); tests/integration/test_localmail.py is their contract test, against Dovecot.

What is overridden, and why:
- messages are served as stored (`_StoredMessage`), through pymap's private `_load_maildir`;
- responses go out whole (`_Corked`), for IDLE clients that read without blocking;
- the greeting names a fixed host, never asking DNS;
- index files are written beside their target, not in the temp dir (`write_in_place`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from argparse import Namespace
from collections.abc import Awaitable, Callable, Iterable
from mailbox import MaildirMessage
from pathlib import Path
from tempfile import NamedTemporaryFile
from typing import Any, Protocol

from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from proxyprotocol.version import ProxyProtocolVersion
from pymap.backend.maildir import Config, Identity, Login
from pymap.backend.maildir.io import FileWriteable
from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import MailboxData, Maildir
from pymap.concurrent import Subsystem
from pymap.frozen import frozendict
from pymap.imap import IMAPServer
from pymap.interfaces.login import IdentityInterface
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import FetchRequirement
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

__all__ = ["HOSTNAME", "Mailbox", "Store", "write_in_place"]

HOSTNAME = "localmail"  # how both servers name themselves in greetings
Mailbox = MailboxData
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


def _file_write_in_place(self: FileWriteable) -> None:
    """pymap's `FileWriteable.file_write`, with the temporary file made in the target's folder:
    pymap makes it in the temp dir and renames it into place, which fails across filesystems
    (EXDEV, e.g. with /tmp on a tmpfs) and would tie every LocalMail to the temp dir's."""
    file_path = self.get_file(self.path)
    with NamedTemporaryFile("w", delete=False, dir=os.path.dirname(file_path) or ".", prefix="tmp-") as tmp:
        self.write(tmp)
    os.replace(tmp.name, file_path)
    self._touched = False


def write_in_place() -> None:
    """Have pymap write its index files (users, UID lists, subscriptions) beside their targets.
    pymap offers no setting for it, so its method is replaced, once, when a LocalMail starts."""
    FileWriteable.file_write = _file_write_in_place  # type: ignore[method-assign]


class Store:
    """pymap's maildir backend, configured for LocalMail: its accounts, folders and messages."""

    def __init__(self, root: Path, host: str, port: int) -> None:
        self.config = _Config(
            Namespace(passlib_cfg=None, proxy_protocol=None),  # what pymap would read from its command line
            host=host,
            port=port,
            base_dir=str(root),
            layout="++",
            colon=None,
            cpu_subsystem=Subsystem.for_asyncio(),  # pymap's default is a thread pool nobody shuts down
            tls_enabled=False,
            reject_dnsbl=False,
            invalid_user_sleep=0.0,
            hash_context=BuiltinHash(rounds=1000),  # the files under root hold no password, and LOGIN stays fast
        )
        self.login = _Login(self.config)

    async def add_account(self, name: str, password: str | None, folders: Iterable[str]) -> None:
        """Create or update an account (no password: nobody logs in as it) and its folders."""
        hashed = await Passwords(self.config).hash_password(password) if password is not None else None
        identity = self._identity(name)
        await identity.set(UserMetadata(self.config, name, password=hashed, params=frozendict({"mailbox_path": name})))
        async with identity.new_session() as session:
            for folder in folders:
                if folder != "INBOX":
                    try:
                        await session.mailbox_set.add_mailbox(folder)
                    except KeyError:
                        pass  # made by an earlier run
                await session.mailbox_set.get_mailbox(folder)  # fixes its UIDVALIDITY now

    async def mailbox(self, user: str, folder: str) -> Mailbox:
        """One folder of `user`, read afresh from its files."""
        async with self._identity(user).new_session() as session:
            found = await session.mailbox_set.get_mailbox(folder)
        assert isinstance(found, MailboxData)
        return found

    @staticmethod
    async def append(mailbox: Mailbox, raw: bytes, when: dt.datetime) -> None:
        await mailbox.append(AppendMessage(raw, when), recent=True)

    @staticmethod
    async def contents(mailbox: Mailbox) -> list[bytes]:
        """The messages of a folder in UID order, as IMAP serves them."""
        found = sorted([m async for m in mailbox.messages()], key=lambda m: m.uid)
        return [bytes((await m.load_content(FetchRequirement.CONTENT)).content) for m in found]

    def imap_connection(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        """The callback for `asyncio.start_server` that serves IMAP on each connection."""
        server = IMAPServer(self.login, self.config)

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo) -> None:
            await server(reader, _Corked(writer), sock_info)  # type: ignore[arg-type]

        callback: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
        callback = ProxyProtocolReader(ProxyProtocolVersion.get(None)).get_callback(connection)
        return callback

    def _identity(self, name: str) -> _Identity:
        return _Identity(self.config, self.login.tokens, name, None, frozenset())
