"""The one place that reaches into uvicorn's internals (pinned in pyproject.toml; a contract test
in tests/integration/test_http_server.py holds it to the installed version)."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, where the keep-alive timeout also bounds the wait for a request.

    uvicorn arms its keep-alive timer only after a response, and stops it on any byte received: a
    connection that never sends a request, or sends its head a byte at a time, would be held for
    good. Here the timer also runs from the moment a connection opens, and only a whole request
    head stops it (uvicorn's own handling of a request event does).
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.handle_events()
