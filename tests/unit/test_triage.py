"""The poller's header triage reads a header block as the email package does, and decides from it
which messages are worth their bodies."""

from __future__ import annotations

import sys
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.mail import inbound, reader, triage, vocabulary
from outreach.mail import inbound_mime as mime
from tests import corpus

names = st.sampled_from(["From", "Reply-To", "To", "Cc", "Subject", "In-Reply-To", "References", "Return-Path", "Auto-Submitted", "Precedence", "Content-Type", "X-Autoreply", "X-Header"])
# printable ASCII without the line breaks a header value cannot hold unfolded
words = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
values = st.lists(words, max_size=6).map(" ".join)
folds = st.sampled_from(["\r\n ", "\r\n\t", "\n ", " "])


@st.composite
def header_blocks(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    fields = draw(st.lists(st.tuples(names, values, values, folds), max_size=10))
    ending = draw(st.sampled_from(["\r\n", "\n"]))
    lines = [f"{name}: {first}{fold + second if second else ''}{ending}" for name, first, second, fold in fields]
    return ("".join(lines) + ending).encode(), [(name, f"{first} {second}".strip()) for name, first, second, _ in fields]


def _parser_view(block: bytes) -> list[tuple[str, str]]:
    return [(name.lower(), " ".join(str(value).split())) for name, value in BytesHeaderParser().parsebytes(block).items()]


@settings(max_examples=300, deadline=None)
@given(header_blocks())
def test_fields_read_a_header_block_as_the_email_package_does(block: tuple[bytes, list[tuple[str, str]]]) -> None:
    raw, written = block
    ours = [(name, " ".join(value.split())) for name, value in triage.fields(raw)]
    assert ours == _parser_view(raw)
    assert ours == [(name.lower(), " ".join(value.split())) for name, value in written]


def test_fields_agree_with_the_email_package_on_the_corpus() -> None:
    checked = 0
    corpus.require()
    for case in corpus.all_cases():
        head = case.raw().replace(b"\r\n", b"\n").split(b"\n\n", 1)[0] + b"\n\n"
        ours = [(name, " ".join(value.split())) for name, value in triage.fields(head)]
        assert ours == _parser_view(head), case.path
        checked += 1
    assert checked > 500


def test_the_glance_wants_answers_reports_and_auto_replies_and_not_newsletters() -> None:
    def glance(head: str) -> tuple[frozenset[str], frozenset[str], bool]:
        seen = triage.glance(1, head.replace("\n", "\r\n").encode(), inbox=True)
        return seen.refs, seen.people, seen.automatic

    assert glance("From: Asha <Asha@Client.example>\nIn-Reply-To: <a@us>\nReferences: <r@us>\n <a@us>\n\n") == (frozenset({"<a@us>", "<r@us>"}), frozenset({"asha@client.example"}), False)
    assert glance("From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\n\n")[2]
    assert glance("From: a@b.example\nAuto-Submitted: auto-replied\n\n")[2]
    assert not glance("From: a@b.example\nAuto-Submitted: no\n\n")[2]
    assert glance("From: a@b.example\nSubject: Automatic reply\nReturn-Path: <>\n\n")[2]
    assert glance("From: a@b.example\nSubject: unsubscribe\n\n")[2]
    assert glance("From: News <news@lists.example>\nSubject: Weekly digest\n\n") == (frozenset(), frozenset({"news@lists.example"}), False)


@pytest.mark.parametrize("name", [
    "Auto-Submitted", "X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-AutoReply-From", "X-Mail-Autoreply",
    "X-MS-Exchange-Inbox-Rules-Loop", "X-MS-Exchange-Generated-Message-Source",
])
def test_every_auto_reply_header_is_fetched_and_wants_a_body_from_anyone(name: str) -> None:
    head = f"From: Help Desk <desk@support.example>\nSubject: Thanks\n{name}: yes\n\n"
    assert name.upper() in reader.HEADER_FIELDS
    assert triage.glance(1, head.encode(), inbox=True).automatic
    assert inbound.classify(f"{head}We got your message.\n".encode()).kind is inbound.Kind.AUTO_REPLY
    assert not triage.glance(1, head.replace(": yes", ": no").encode(), inbox=True).automatic


def test_list_headers_alone_want_no_body() -> None:
    head = b"From: News <news@lists.example>\nSubject: Digest\nList-Id: <news.lists.example>\nList-Unsubscribe: <mailto:u@lists.example>\n\n"
    assert not triage.glance(1, head, inbox=True).automatic


def test_the_fetch_holds_every_header_the_classifier_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the classifier reads of a message's own header (not of its parts) is what the poller fetches
    before deciding whether the body is worth it; the headers that describe the body come with it."""
    read: set[str] = set()
    tops: list[Message] = []
    plain_get, plain_get_all = Message.get, Message.get_all

    def recorded(name: str, msg: Message) -> None:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        if tops and msg is tops[-1] and caller.startswith("outreach."):
            read.add(name.lower())

    def get(self: Message, name: str, failobj: Any = None) -> Any:
        recorded(name, self)
        return plain_get(self, name, failobj)

    def get_all(self: Message, name: str, failobj: Any = None) -> Any:
        recorded(name, self)
        return plain_get_all(self, name, failobj)

    plain_load = mime.load

    def load(raw: bytes) -> Message:
        tops.append(plain_load(raw))
        return tops[-1]

    monkeypatch.setattr(Message, "get", get)
    monkeypatch.setattr(Message, "get_all", get_all)
    monkeypatch.setattr(mime, "load", load)
    corpus.require()
    samples = [case.raw() for case in corpus.all_cases()]
    head = "From: a@b.example\nSubject: x\n" + "".join(f"{name}: yes\n" for name in vocabulary.AUTOMATIC)
    samples.append(f"{head}\nPlease remove me from your list.\n".encode())
    for raw in samples:
        inbound.read(raw).classify()
    fetched = {name.lower() for name in reader.HEADER_FIELDS}
    body = {name.lower() for name in vocabulary.BODY}
    assert {name.lower() for name in vocabulary.AUTO_REPLY} <= read
    assert read - body <= fetched, sorted(read - body - fetched)
