"""SMTP with aiosmtplib: STARTTLS or implicit TLS, auth from the mailbox, one connection reused.

Reply codes become control flow: 4xx and dropped connections are TemporaryFailure (retry
with backoff), 5xx on RCPT is RecipientRefused (a hard bounce), any other 5xx PermanentFailure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import Message

import aiosmtplib

from outreach.config import ServerConfig
from outreach.mail.transport import Accepted, PermanentFailure, RecipientRefused, SendError, TemporaryFailure

log = logging.getLogger(__name__)

IDLE_CHECK = 30.0  # seconds; a connection idle longer than this is checked with NOOP before use


class SmtpTransport:
    def __init__(self, config: ServerConfig, *, timeout: float = 30.0, deadline: float | None = None) -> None:
        self.config = config
        self.timeout = timeout  # for each command
        # for one whole message, connecting included: the sender's claim on it outlasts this
        self.deadline = deadline
        self._loop = asyncio.new_event_loop()
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    def _create_client(self) -> aiosmtplib.SMTP:
        """The one place a connection object is made; tests may override it."""
        cfg = self.config
        return aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.security == "tls",
            start_tls=True if cfg.security == "starttls" else False,
            timeout=self.timeout,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected:
            if time.monotonic() - self._last_used < IDLE_CHECK:
                return client
            try:  # idle for a while: servers drop idle connections, so ask before using it
                await client.noop()
                return client
            except aiosmtplib.SMTPException:
                self._drop()
        client = self._create_client()
        await client.connect()
        password = self.config.password()
        if self.config.username and password is not None:
            await client.login(self.config.username, password)
        self._client = client
        return client

    async def _send(self, message: Message, sender: str, recipients: list[str]) -> Accepted:
        client = await self._connected()
        # our own serialisation (aiosmtplib's would fold headers again at 78 characters)
        errors, reply = await client.sendmail(sender, recipients, message.as_bytes())
        self._last_used = time.monotonic()
        if errors:  # some recipients refused, others accepted: we send to one, so this is rare
            address, response = next(iter(errors.items()))
            raise RecipientRefused(f"{address} refused: {response.code} {response.message}", recipient=address, code=response.code, reply=response.message)
        code = int(reply.split(" ", 1)[0]) if reply[:3].isdigit() else 250
        return Accepted(code=code, reply=reply)

    def send(self, message: Message, sender: str, recipients: list[str]) -> Accepted:
        try:
            return self._loop.run_until_complete(asyncio.wait_for(self._send(message, sender, recipients), self.deadline))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._drop()
            first = exc.recipients[0]
            error: SendError = (
                TemporaryFailure(f"{first.recipient} deferred: {first.code} {first.message}", code=first.code, reply=first.message)
                if 400 <= first.code < 500
                else RecipientRefused(f"{first.recipient} refused: {first.code} {first.message}", recipient=first.recipient, code=first.code, reply=first.message)
            )
            raise error from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            self._drop()
            if 400 <= exc.code < 500:
                raise TemporaryFailure(f"{exc.recipient} deferred: {exc.code} {exc.message}", code=exc.code, reply=exc.message) from exc
            raise RecipientRefused(f"{exc.recipient} refused: {exc.code} {exc.message}", recipient=exc.recipient, code=exc.code, reply=exc.message) from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection to {self.config.host}:{self.config.port} failed: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            if 400 <= exc.code < 500:
                raise TemporaryFailure(f"server said {exc.code} {exc.message}", code=exc.code, reply=exc.message) from exc
            raise PermanentFailure(f"server said {exc.code} {exc.message}", code=exc.code, reply=exc.message) from exc
        except aiosmtplib.SMTPException as exc:
            self._drop()
            raise TemporaryFailure(f"SMTP error: {exc}") from exc

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
                self._loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing its socket
            except Exception:  # a broken connection may fail to close; it is gone either way
                log.debug("closing a failed SMTP connection raised", exc_info=True)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                self._loop.run_until_complete(client.quit())
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()
