"""Reading fetched mail in a worker process: the same answers as reading it here, return dates
included, and nothing lost when the worker dies."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.mail import intake
from outreach.mail.inbound import Kind
from tests import corpus

NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
ARRIVED = dt.datetime(2026, 11, 19, 17, 30, tzinfo=dt.timezone.utc)

OUT_OF_OFFICE = b"""From: Lead <lead@client.example>
To: priya@appneural.example
Subject: Automatic reply: A proposal
Message-ID: <ooo-%d@client.example>
In-Reply-To: <intro-1@appneural.example>
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=utf-8

I am out of the office until %d December 2026 with limited access to email.
"""


def _batch() -> intake.Batch:
    """Real mail of every class from the corpus, and out-of-office notices with a return date each."""
    corpus.require()
    cases = corpus.all_cases()
    picked = [case for kind in Kind for case in [c for c in cases if c.expected is kind][:12]]
    batch: intake.Batch = [(uid, case.raw(), ARRIVED if uid % 2 else None) for uid, case in enumerate(picked, 1)]
    start = len(batch) + 1
    batch += [(start + n, OUT_OF_OFFICE % (n, 1 + n), ARRIVED) for n in range(10)]
    return batch


def _answers(reads: list[intake.Read]) -> list[tuple[object, ...]]:
    """What the poller takes from each message: who, when and what, with the return date read."""
    return [(r.uid, r.message, r.received, r.dated(), r.dated().evidence) for r in reads]


@pytest.fixture
def readers(start_readers: Callable[[int], intake.Readers]) -> intake.Readers:
    return start_readers(1)


def _kill_workers(readers: intake.Readers) -> object:
    """SIGKILL every worker of the pool and wait until the pool knows; the pool killed."""
    pool = readers._pool
    assert pool is not None
    for pid in list(pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pool._processes and time.monotonic() < deadline and not pool._broken:  # type: ignore[union-attr]
        time.sleep(0.05)
    return pool


@pytest.fixture(scope="module")
def batch() -> intake.Batch:
    return _batch()


def test_a_worker_reads_what_this_process_reads(readers: intake.Readers, batch: intake.Batch) -> None:
    here = intake.read_batch(batch, NOW, classify=True, eager=False)
    there = readers.submit(batch, NOW, classify=True).result()
    assert all(r.parsed is None for r in there)  # read in the worker: the return date came with it
    assert _answers(there) == _answers(here)
    dates = [r.dated().until for r in there if (r.message.message_id or "").startswith("<ooo-")]
    assert dates == [dt.date(2026, 12, 1 + n) for n in range(10)]
    assert {r.found.kind for r in there if r.found is not None} >= {Kind.BOUNCE, Kind.AUTO_REPLY, Kind.REPLY}


def test_received_is_the_servers_arrival_and_never_after_the_clock(readers: intake.Readers, batch: intake.Batch) -> None:
    reads = readers.submit(batch, NOW, classify=False).result()
    assert all(r.found is None for r in reads)  # the Sent folder: parsed, not classified
    assert all(r.received <= NOW for r in reads)
    assert [r.received for r in reads if r.uid % 2 and r.uid <= len(batch) - 10] == [ARRIVED] * len([u for u, _, a in batch[:-10] if u % 2])


def test_a_few_messages_are_read_here(readers: intake.Readers, batch: intake.Batch) -> None:
    small = batch[: intake.POOL_FROM - 1]
    reads = readers.submit(small, NOW, classify=True).result()
    assert all(r.parsed is not None for r in reads)  # kept for a later look at the return date
    assert _answers(reads) == _answers(intake.read_batch(small, NOW, classify=True, eager=True))


def test_without_a_second_core_all_is_read_here(batch: intake.Batch) -> None:
    readers = intake.Readers(workers=0)
    reads = readers.submit(batch, NOW, classify=True).result()
    assert readers._pool is None
    assert all(r.parsed is not None for r in reads)
    assert _answers(reads) == _answers(intake.read_batch(batch, NOW, classify=True, eager=False))


def test_a_dead_worker_loses_nothing(readers: intake.Readers, batch: intake.Batch, caplog: pytest.LogCaptureFixture) -> None:
    expected = _answers(intake.read_batch(batch, NOW, classify=True, eager=False))
    assert _answers(readers.submit(batch, NOW, classify=True).result()) == expected  # the worker is up
    pool = _kill_workers(readers)
    assert _answers(readers.submit(batch, NOW, classify=True).result()) == expected  # read here instead
    assert any("reading worker" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    again = readers.submit(batch, NOW, classify=True).result()  # and the next batch has a worker again
    assert readers._pool is not None and readers._pool is not pool
    assert _answers(again) == expected


@given(items=st.integers(0, 3000), workers=st.integers(0, 6), smallest=st.integers(1, 300))
def test_a_batch_is_split_into_a_piece_a_worker_none_too_small(items: int, workers: int, smallest: int) -> None:
    batch = list(range(items))
    pieces = intake.Readers(workers=workers).split(batch, smallest)
    assert [x for piece in pieces for x in piece] == batch  # all of it, in order, once
    assert 1 <= len(pieces) <= max(1, workers)
    if len(pieces) > 1:
        assert min(len(piece) for piece in pieces) >= smallest and max(len(p) for p in pieces) - min(len(p) for p in pieces) <= 1
    if workers > 1 and items >= 2 * smallest:
        assert len(pieces) >= 2  # a large batch is shared


def test_two_workers_share_a_batch_and_answer_in_order(start_readers: Callable[[int], intake.Readers], batch: intake.Batch) -> None:
    readers = start_readers(2)
    assert len(readers.split(batch, intake.POOL_FROM)) == 2
    there = readers.submit(batch, NOW, classify=True).result()
    assert [r.uid for r in there] == [uid for uid, _, _ in batch]
    assert all(r.parsed is None for r in there)
    assert _answers(there) == _answers(intake.read_batch(batch, NOW, classify=True, eager=False))


def _header_fetch(count: int) -> tuple[list[object], list[int]]:
    """A header FETCH as imaplib hands it over, for `count` messages with UIDs from 101, and a
    flag change the server volunteered for message number 3 (no UID)."""
    data: list[object] = []
    for n in range(count):
        head = f"From: Lead {n} <lead{n}@client.example>\r\nIn-Reply-To: <intro-{n}@appneural.example>\r\nSubject: Re: A proposal\r\n\r\n".encode()
        data += [(f'{n + 1} (UID {101 + n} RFC822.SIZE {900 + n} INTERNALDATE "19-Nov-2026 17:30:00 +0000" BODY[HEADER.FIELDS (FROM IN-REPLY-TO SUBJECT)] {{{len(head)}}}'.encode(), head), b")"]
    data.append(b"3 (FLAGS (\\Seen))")
    return data, [101 + n for n in range(count)]


def test_a_header_fetch_is_parsed_and_glanced_at_in_a_worker_as_here(readers: intake.Readers, caplog: pytest.LogCaptureFixture) -> None:
    data, uids = _header_fetch(intake.HEADERS_POOL_FROM + 5)
    here = intake.read_headers(data, uids, inbox=True)
    assert [h.uid for h in here] == uids and [h.size for h in here[:2]] == [900, 901]
    assert here[0].internal_date == ARRIVED and here[0].glance.refs == frozenset({"<intro-0@appneural.example>"})
    assert here[0].glance.people == frozenset({"lead0@client.example"}) and not here[0].glance.automatic
    assert readers.submit_headers(data, uids, inbox=True).result() == here
    assert readers.submit_headers(data, uids[:4], inbox=True).result() == here[:4]  # a few: read here

    _kill_workers(readers)
    assert readers.submit_headers(data, uids, inbox=True).result() == here  # the worker died: parsed here
    assert any("reading worker" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
