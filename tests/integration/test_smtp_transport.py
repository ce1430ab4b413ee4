"""The SMTP transport against aiosmtpd: reply codes become the right kind of failure."""

from __future__ import annotations

import datetime as dt

import pytest

from outreach.config import ServerConfig
from outreach.mail.compose import Party, compose, make_message_id
from outreach.mail.templates import Rendered
from outreach.mail.transport import PermanentFailure, RecipientRefused, TemporaryFailure
from outreach.mail.transports.smtp import SmtpTransport
from tests.servers import Faults, SmtpServer, free_port


def _msg(to: str = "jane@example.com") -> object:
    return compose(Rendered("s", "hi\n", None), sender=Party("priya@appneural.example"), recipient=Party(to), message_id=make_message_id("appneural.example"), date=dt.datetime.now(dt.timezone.utc), subject="Hello")


def test_one_connection_carries_many_messages(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(ServerConfig(host="127.0.0.1", port=smtp_server.port, security="none"))
    try:
        for _ in range(5):
            accepted = transport.send(_msg(), "priya@appneural.example", ["jane@example.com"])  # type: ignore[arg-type]
            assert accepted.code == 250
        first = transport._client
        transport.send(_msg(), "priya@appneural.example", ["jane@example.com"])  # type: ignore[arg-type]
        assert transport._client is first
    finally:
        transport.close()
    assert len(smtp_server.received) == 6


@pytest.mark.parametrize(
    ("faults", "error", "code"),
    [
        (Faults(refuse={"jane@example.com"}), RecipientRefused, 550),
        (Faults(temp_fail_share=1.0), TemporaryFailure, 421),
        (Faults(drop_share=1.0), TemporaryFailure, None),
    ],
)
def test_reply_codes_are_classified(smtp_server: SmtpServer, faults: Faults, error: type[Exception], code: int | None) -> None:
    smtp_server.handler.set_faults(faults)
    transport = SmtpTransport(ServerConfig(host="127.0.0.1", port=smtp_server.port, security="none"))
    try:
        with pytest.raises(error) as caught:
            transport.send(_msg(), "priya@appneural.example", ["jane@example.com"])  # type: ignore[arg-type]
        if code is not None:
            assert getattr(caught.value, "code", None) == code
        smtp_server.handler.set_faults(Faults())
        assert transport.send(_msg(), "priya@appneural.example", ["jane@example.com"]).code == 250  # type: ignore[arg-type]
    finally:
        transport.close()
    assert smtp_server.received and smtp_server.received[-1].recipients == ["jane@example.com"]


def test_a_server_that_is_not_there_is_a_temporary_failure() -> None:
    transport = SmtpTransport(ServerConfig(host="127.0.0.1", port=free_port(), security="none"), timeout=2)
    try:
        with pytest.raises(TemporaryFailure, match="connection to 127.0.0.1"):
            transport.send(_msg(), "priya@appneural.example", ["jane@example.com"])  # type: ignore[arg-type]
    finally:
        transport.close()


def test_a_permanent_5xx_that_is_not_about_the_recipient(smtp_server: SmtpServer) -> None:
    async def refuse_data(server: object, session: object, envelope: object) -> str:
        return "554 5.6.0 Message content rejected"

    smtp_server.handler.handle_DATA = refuse_data  # type: ignore[method-assign]
    transport = SmtpTransport(ServerConfig(host="127.0.0.1", port=smtp_server.port, security="none"))
    try:
        with pytest.raises(PermanentFailure, match="554"):
            transport.send(_msg(), "priya@appneural.example", ["jane@example.com"])  # type: ignore[arg-type]
    finally:
        transport.close()
