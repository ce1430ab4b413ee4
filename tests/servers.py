"""Real servers for tests: aiosmtpd (SMTP) in-process, Dovecot (IMAP) as a child process."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

DOVECOT_TEMPLATE = Path(__file__).resolve().parent / "fixtures" / "dovecot.conf.template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Faults:
    """What the SMTP server does wrong, chosen per test."""

    temp_fail_share: float = 0.0  # share of MAIL/RCPT commands answered 451 / 421
    drop_share: float = 0.0  # share of DATA commands whose connection is dropped before the reply
    refuse: set[str] = field(default_factory=set)  # recipients answered 550 on RCPT
    refuse_with: dict[str, str] = field(default_factory=dict)  # recipients answered on RCPT with this reply
    hang_data: float = 0.0  # seconds to stall before answering DATA
    accept_before_hang: bool = False  # with hang_data: the message counts as delivered before the stall
    on_accept: Any = None  # called with (Received) once a message is accepted, before the 250
    seed: int = 1


class RecordingHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures: list[str] = []
        self.faults = Faults()
        self._rng = random.Random(1)
        self._lock = threading.Lock()

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def _roll(self, share: float) -> bool:
        with self._lock:
            return share > 0 and self._rng.random() < share

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        if self._roll(self.faults.temp_fail_share):
            self.failures.append("421 on MAIL")
            return "421 4.3.2 Service not available, try later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.lower() in self.faults.refuse:
            self.failures.append(f"550 on RCPT {address}")
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.lower() in self.faults.refuse_with:
            self.failures.append(f"refused on RCPT {address}")
            return self.faults.refuse_with[address.lower()]
        if self._roll(self.faults.temp_fail_share):
            self.failures.append("451 on RCPT")
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._roll(self.faults.drop_share):
            self.failures.append("connection dropped in DATA")
            server.transport.close()
            return "421 4.4.2 connection dropped"
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        if self.faults.hang_data:
            # stall before answering; a client that goes away meanwhile has not had its message accepted
            import asyncio

            if self.faults.on_accept is not None:
                self.faults.on_accept(received)
            for _ in range(int(self.faults.hang_data * 20)):
                await asyncio.sleep(0.05)
                if server._reader.at_eof() and not self.faults.accept_before_hang:
                    self.failures.append("client went away during DATA")
                    return "421 4.4.2 client went away"
            if not self.faults.accept_before_hang:
                with self._lock:
                    self.received.append(received)
            return "250 2.0.0 Ok: queued"
        if self.faults.on_accept is not None:
            self.faults.on_accept(received)
        with self._lock:
            self.received.append(received)
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received


class _ImapServer:
    """What the tests do with an IMAP server, whichever it is: log in as a user, APPEND."""

    port: int
    users: dict[str, str]

    def client(self, user: str):  # type: ignore[no-untyped-def]
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, self.users[user])
        return client

    def append(self, user: str, folder: str, raw: bytes) -> None:
        client = self.client(user)
        try:
            client.append(folder, raw)
        finally:
            client.logout()


class Dovecot(_ImapServer):
    """A throwaway Dovecot from Debian's dovecot-imapd, with its config in a temp dir."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.root = Path(tempfile.mkdtemp(prefix="outreach-dovecot-"))
        self.port = free_port()
        self._binary = shutil.which("dovecot") or "/usr/sbin/dovecot"

    def start(self) -> Dovecot:
        if not Path(self._binary).exists():
            raise FileNotFoundError("dovecot is not installed; apt-get install -y dovecot-imapd")
        text = DOVECOT_TEMPLATE.read_text().replace("{ROOT}", str(self.root)).replace("{PORT}", str(self.port))
        (self.root / "dovecot.conf").write_text(text)
        (self.root / "users").write_text("".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items()))
        for sub in ("mail", "run", "state"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chmod(self.root, 0o755)
        subprocess.run(["chown", "-R", "dovecot:dovecot", str(self.root / "mail")], check=True)
        subprocess.run([self._binary, "-c", str(self.root / "dovecot.conf")], check=True)
        wait_port(self.port)
        return self

    def restart(self) -> None:
        """Stop the server and start it again on the same port and mail store (clients are cut off)."""
        self._kill()
        subprocess.run([self._binary, "-c", str(self.root / "dovecot.conf")], check=True)
        wait_port(self.port)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill(self) -> None:
        pid_file = self.root / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, 15)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass


    def messages(self, user: str, folder: str) -> list[EmailMessage]:
        client = self.client(user)
        try:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            data = client.fetch(uids, ["RFC822"]) if uids else {}
            return [message_from_bytes(data[uid][b"RFC822"], policy=policy.default) for uid in sorted(data)]  # type: ignore[misc]
        finally:
            client.logout()


class Pymap(_ImapServer):
    """LocalMail (pymap, in this process) behind the same test interface as `Dovecot`: a second IMAP
    server implementation for the same suite."""

    def __init__(self, users: dict[str, str]) -> None:
        from outreach.demo.localmail import LocalMail

        self.users = users
        self.root = Path(tempfile.mkdtemp(prefix="outreach-pymap-", dir=tempfile.gettempdir()))
        self._mail = LocalMail(self.root / "mail", users)

    def start(self) -> Pymap:
        self._mail.start()
        self.port = self._mail.imap_port
        return self

    def restart(self) -> None:
        """Stop and start again on the same port and maildirs (clients are cut off)."""
        from outreach.demo.localmail import LocalMail

        self._mail.stop()
        self._mail = LocalMail(self.root / "mail", self.users, imap_port=self.port)
        self._mail.start()

    def stop(self) -> None:
        self._mail.stop()
        shutil.rmtree(self.root, ignore_errors=True)


    def messages(self, user: str, folder: str) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for raw in self._mail.messages(user, folder)]  # type: ignore[misc]
