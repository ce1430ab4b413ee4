"""Headers read off Dovecot and parsed in worker processes: the same as parsing them here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from imapclient.response_parser import parse_fetch_response

from outreach.config import ImapConfig
from outreach.mail import intake
from outreach.mail.reader import FolderReader
from tests import corpus
from tests.pipeline import PASSWORD_ENV
from tests.servers import Dovecot

BOX = "meera@appneural.example"


@pytest.fixture
def reader(dovecot: Dovecot) -> Iterator[FolderReader]:
    corpus.require()
    client = dovecot.client(BOX)
    try:  # real mail of every kind, more than one worker's share of a FETCH
        for case in corpus.all_cases()[: 2 * intake.HEADERS_POOL_FROM + 40]:
            client.append("INBOX", case.raw())
    finally:
        client.logout()
    reader = FolderReader(ImapConfig(host="127.0.0.1", port=dovecot.port, security="none", username=BOX, password_env=PASSWORD_ENV))
    reader.open("INBOX")
    yield reader
    reader.close()


@pytest.fixture
def readers(start_readers: Callable[[int], intake.Readers]) -> intake.Readers:
    return start_readers(2)


def test_workers_parse_a_header_fetch_as_this_process_does(reader: FolderReader, readers: intake.Readers) -> None:
    uids = reader.uids_after(0)
    here = intake.read_headers(reader.raw_headers(uids), uids, inbox=True)
    assert len(here) == len(uids) and all(h.size > 0 and h.internal_date is not None for h in here)
    assert sum(h.glance.automatic for h in here) > 100 and sum(bool(h.glance.refs) for h in here) > 50  # the corpus's reports and answers

    pieces = readers.split(uids, intake.HEADERS_POOL_FROM)
    assert len(pieces) == 2 and [u for piece in pieces for u in piece] == uids
    pending = intake.Pending.joined([readers.submit_headers(reader.raw_headers(piece), piece, inbox=True) for piece in pieces])
    assert pending.result() == here


def test_only_the_messages_asked_for_come_back(dovecot: Dovecot, reader: FolderReader) -> None:
    """The server volunteers FETCH responses for flags set elsewhere, numbered by sequence, not UID:
    none is taken for an asked-for message, even where its number is that message's UID."""
    uids = reader.uids_after(0)
    other = dovecot.client(BOX)
    try:
        other.select_folder("INBOX")
        other.delete_messages(uids[:20])
        other.expunge()  # UIDs 1-20 gone: the message with UID 21 is now number 1
        reader.refresh()
        other.add_flags(uids[20:25], [b"\\Flagged"])  # "* 1 FETCH (FLAGS ...)" to "* 5 FETCH ..." on our next command
    finally:
        other.logout()
    asked = [uids[2], uids[3], uids[30], uids[31]]  # two expunged, whose UIDs are the volunteered numbers
    raw = reader.raw_headers(asked)
    assert any(isinstance(line, bytes) and b"FLAGS" in line for line in raw)  # the server did volunteer them
    assert [f.uid for f in intake.read_headers(raw, asked, inbox=True)] == asked[2:]
    assert {asked[0], asked[1]} <= set(parse_fetch_response(raw, True, True))  # keyed by UID, they would have stood for those two
    assert reader.raw_headers([]) == [None] and intake.read_headers([None], [], inbox=True) == []
