"""Reading fetched mail: parsing and classification, for a large batch in a worker process.

Parsing a message and classifying it costs about a millisecond, reading an out-of-office notice's
return date a few more; parsing a FETCH of headers (imapclient's lexer) and glancing at them
about a tenth of a millisecond a message, three times what reading it off the connection costs:
CPU work that would otherwise hold up the poller, one thread, between two FETCHes. A large batch
of headers or bodies goes to a worker process while the poller fetches the next one from the
server and records the one before; a few (a reply seen in IDLE) are read here, where they cost
no round trip.

What a worker sends back is the same as what is read here, with the return date read eagerly:
a worker cannot be asked for it later, when the message turns out to concern us.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from outreach.mail import inbound as inb
from outreach.mail import triage
from outreach.mail.reader import RawFetch, parse_headers

log = logging.getLogger(__name__)

POOL_FROM = 32  # bodies in a batch from which a worker process reads it
HEADERS_POOL_FROM = 256  # messages in a FETCH of headers from which a worker process parses it
R = TypeVar("R")
X = TypeVar("X")


class Headed(NamedTuple):
    """A message's headers, parsed and glanced at: all the poller keeps of them."""

    uid: int
    size: int
    internal_date: dt.datetime | None
    glance: triage.Glance


def read_headers(data: RawFetch, uids: Sequence[int], *, inbox: bool) -> list[Headed]:
    """A FETCH of headers (`FolderReader.raw_headers`), parsed, each message glanced at."""
    return [Headed(f.uid, f.size, f.internal_date, triage.glance(f.uid, f.header, inbox=inbox)) for f in parse_headers(data, uids)]


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


_Part = tuple[int, Callable[[], list[R]], Future[list[R]] | None]  # (messages, how to read them here, the worker's reading)


class Pending(Generic[R]):
    """A batch being read, in one part or a part per worker: `result()` waits for them all. Should
    a worker die (killed, out of memory), its part is read here instead; nothing is lost."""

    def __init__(self, readers: Readers, parts: list[_Part[R]]) -> None:
        self._readers, self._parts = readers, parts

    @classmethod
    def joined(cls, pendings: Sequence[Pending[R]]) -> Pending[R]:
        """Batches read as one, in order."""
        assert pendings, "nothing to join"
        return cls(pendings[0]._readers, [part for pending in pendings for part in pending._parts])

    def result(self) -> list[R]:
        out: list[R] = []
        for size, local, future in self._parts:
            if future is not None:
                try:
                    out.extend(future.result())
                    continue
                except BrokenProcessPool:
                    log.warning("the reading worker died; reading %d messages here", size, exc_info=True)
                    self._readers.restart()
            out.extend(local())
        return out


class Readers:
    """Worker processes for large batches, started once and shared by the process's pollers (one
    per mailbox, in threads of their own): one a core, up to four, for the poller's own thread mostly
    waits on the server and the database. With a single core there are none: all is read here."""

    def __init__(self, workers: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.workers = (min(4, cores) if cores > 1 else 0) if workers is None else workers
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

    def split(self, items: Sequence[X], smallest: int) -> list[Sequence[X]]:
        """A large batch in a piece per worker, none smaller than `smallest`, so that they read it together."""
        pieces = max(1, min(self.workers, len(items) // smallest))
        size, more = divmod(len(items), pieces)  # the first `more` pieces one longer
        bounds = [n * size + min(n, more) for n in range(pieces + 1)]
        return [items[a:b] for a, b in zip(bounds, bounds[1:])]

    def submit(self, batch: Batch, now: dt.datetime, *, classify: bool) -> Pending[Read]:
        """Bodies to parse and, with `classify`, classify (return dates read eagerly in a worker)."""
        large = len(batch) >= POOL_FROM
        return Pending(self, [
            self._part(large, len(piece), functools.partial(read_batch, piece, now, classify=classify, eager=False), functools.partial(read_batch, piece, now, classify=classify, eager=True))
            for piece in self.split(batch, POOL_FROM)
        ])

    def submit_headers(self, data: RawFetch, uids: Sequence[int], *, inbox: bool) -> Pending[Headed]:
        """A FETCH of headers to parse and glance at."""
        work = functools.partial(read_headers, data, uids, inbox=inbox)
        return Pending(self, [self._part(len(uids) >= HEADERS_POOL_FROM, len(uids), work, work)])

    def _part(self, large: bool, size: int, local: Callable[[], list[R]], work: Callable[[], list[R]]) -> _Part[R]:
        """One part of a batch: for a large batch, `work` goes to a worker (pickled: a partial of a module's
        function); `local` reads it here otherwise, or should the worker die."""
        pool = self._get() if large else None
        future = None
        if pool is not None:
            try:
                future = pool.submit(work)
            except BrokenProcessPool:  # a worker died since the last batch
                log.warning("the reading worker is gone; starting another", exc_info=True)
                self.restart()
        return size, local, future

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
