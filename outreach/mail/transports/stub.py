"""An in-memory transport: records what was sent; failures can be scripted per call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from outreach.mail.transport import Accepted


@dataclass
class StubTransport:
    sent: list[tuple[str, list[str], Message]] = field(default_factory=list)
    fail: Callable[[Message], Exception | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: Message, sender: str, recipients: list[str]) -> Accepted:
        if self.fail is not None:
            error = self.fail(message)
            if error is not None:
                raise error
        with self._lock:
            self.sent.append((sender, recipients, message))
        return Accepted(code=250, reply="2.0.0 queued")

    def close(self) -> None:
        pass
