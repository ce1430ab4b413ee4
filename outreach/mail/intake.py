"""Reading fetched mail: parsing and classification, for a large batch in a worker process.

Parsing a message and classifying it costs about a millisecond, reading an out-of-office notice's
return date a few more: CPU work that would otherwise hold up the poller, one thread, between
two FETCHes. A batch of many bodies goes to a worker process while the poller fetches the next
one from the server and records the one before; a few bodies (a reply seen in IDLE) are read
here, where they cost no round trip.

What a worker sends back is the same as what is read here, with the return date read eagerly:
a worker cannot be asked for it later, when the message turns out to concern us.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from outreach.mail import inbound as inb

log = logging.getLogger(__name__)

POOL_FROM = 32  # bodies in a batch from which a worker process reads it


@dataclass(frozen=True)
class Read:
    """One message read: its headers, its arrival (the server's, never after the clock) and, in
    INBOX, what it is. `parsed` is kept when read here, so that the return date can be read later."""

    uid: int
    message: inb.Inbound
    received: dt.datetime
    found: inb.Classification | None
    parsed: inb.Parsed | None = None

    def dated(self) -> inb.Classification:
        """The classification with an auto-reply's return date."""
        assert self.found is not None
        return self.parsed.with_return_date(self.found, received=self.received) if self.parsed is not None else self.found


Batch = list[tuple[int, bytes, dt.datetime | None]]  # (UID, raw message, the server's INTERNALDATE)


def read_batch(batch: Batch, now: dt.datetime, *, classify: bool, eager: bool) -> list[Read]:
    """Parse each message and, with `classify`, classify it; `eager` reads return dates now too
    (in a worker); otherwise they are left for `Read.dated`."""
    out = []
    for uid, raw, arrived in batch:
        parsed = inb.read(raw)
        received = min(arrived or parsed.inbound.date or now, now)
        found = parsed.classify(received=received, return_date=eager) if classify else None
        out.append(Read(uid, parsed.inbound, received, found, None if eager else parsed))
    return out


class Pending:
    """A batch being read: `result()` waits for it. Should its worker die (killed, out of memory),
    the batch is read here instead; nothing is lost."""

    def __init__(self, readers: Readers, batch: Batch, now: dt.datetime, classify: bool, future: Future[list[Read]] | None) -> None:
        self._readers, self._batch, self._now, self._classify, self._future = readers, batch, now, classify, future

    def result(self) -> list[Read]:
        if self._future is not None:
            try:
                return self._future.result()
            except BrokenProcessPool:
                log.warning("the reading worker died; reading %d messages here", len(self._batch), exc_info=True)
                self._readers.restart()
        return read_batch(self._batch, self._now, classify=self._classify, eager=False)


class Readers:
    """Worker processes for large batches, started once and shared by the process's pollers (one
    per mailbox, in threads of their own). Without a second core there are none: all is read here."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(0, min(4, (os.cpu_count() or 1) - 1)) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the workers now (each imports the classifier, a second or so), not on the first
        large batch; once, however many pollers ask."""
        with self._lock:
            if self.workers < 1 or self._pool is not None:
                return
            pool = self._pool = self._new_pool()
        for _ in range(self.workers):
            pool.submit(_warm)

    def submit(self, batch: Batch, now: dt.datetime, *, classify: bool) -> Pending:
        pool = self._get() if len(batch) >= POOL_FROM else None
        future = None
        if pool is not None:
            try:
                future = pool.submit(read_batch, batch, now, classify=classify, eager=True)
            except BrokenProcessPool:  # a worker died since the last batch
                log.warning("the reading worker is gone; starting another", exc_info=True)
                self.restart()
        return Pending(self, batch, now, classify, future)

    def restart(self) -> None:
        """Drop a broken pool: the next large batch starts a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _get(self) -> ProcessPoolExecutor | None:
        if self.workers < 1:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the process has threads (a poller per mailbox) and open connections
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))


def _warm() -> None:
    """Nothing: importing this module (and the classifier) is the work."""


_shared: Readers | None = None
_shared_lock = threading.Lock()


def shared() -> Readers:
    """The process's readers, made on first use and closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Readers()
            atexit.register(_shared.close)
        return _shared
