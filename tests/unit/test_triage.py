"""The poller's header triage reads a header block as the email package does, and decides from it
which messages are worth their bodies."""

from __future__ import annotations

from email.parser import BytesHeaderParser

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.mail import triage
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
