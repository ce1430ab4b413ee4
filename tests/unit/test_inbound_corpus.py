"""The classifier against the shared corpus of real mail: precision and recall per class, hard against
soft for bounces, failed recipients, and the new text of replies. The table is printed with the results."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest

from outreach.mail.inbound import Classification, Kind, classify
from tests import corpus

Result = tuple[corpus.Case, Classification]
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


@dataclass(frozen=True)
class Run:
    results: list[Result]
    seconds: float


@pytest.fixture(scope="module")
def run() -> Run:
    corpus.require()
    cases = corpus.all_cases()
    start = time.perf_counter()
    results = [(case, classify(case.raw())) for case in cases]
    return Run(results, time.perf_counter() - start)


def _precision_recall(results: Sequence[Result], kind: Kind) -> tuple[int, int, int, float, float]:
    expected = sum(1 for case, _ in results if case.expected is kind)
    found = sum(1 for _, got in results if got.kind is kind)
    right = sum(1 for case, got in results if case.expected is kind and got.kind is kind)
    return expected, found, right, corpus.share(right, found), corpus.share(right, expected)


def _scored_bounces(results: Sequence[Result]) -> list[Result]:
    """Detected bounces whose label says hard or soft (unlabelled and 'unknown' ones are not scored)."""
    return [(c, g) for c, g in results if c.expected is Kind.BOUNCE and g.kind is Kind.BOUNCE and c.hard is not None]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _count(results: Sequence[Result], test: Callable[[corpus.Case, Classification], bool]) -> int:
    return sum(1 for case, got in results if test(case, got))


def _all_text(raw: bytes) -> bytes:
    """The message's bytes, and its headers and parts decoded, lower-cased, without white space: where a
    reported address must be found."""
    decoded = [raw]
    for part in message_from_bytes(raw).walk():
        decoded += [str(make_header(decode_header(str(value)))).encode() for value in part.values()]
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            decoded.append(payload)
    return re.sub(rb"\s+", b"", b"".join(decoded)).lower()  # make_header puts spaces around encoded words


def _table(run: Run) -> str:
    results = run.results
    lines = [
        f"inbound classification of {len(results)} corpus messages in {run.seconds:.1f} s",
        f"{'class':<16}{'expected':>9}{'found':>7}{'right':>7}{'precision':>11}{'recall':>8}",
    ]
    for kind in Kind:
        expected, found, right, precision, recall = _precision_recall(results, kind)
        lines.append(f"{kind.value:<16}{expected:>9}{found:>7}{right:>7}{precision:>11.1%}{recall:>8.1%}")
    scored = _scored_bounces(results)
    hard_right = _count(scored, lambda c, g: g.hard == c.hard)
    lines.append(f"hard/soft right among detected, labelled bounces: {hard_right}/{len(scored)} "
                 f"({corpus.share(hard_right, len(scored)):.1%})")
    texts = [(c, g) for c, g in results if c.new_text is not None]
    exact = _count(texts, lambda c, g: _normalise(g.new_text) == _normalise(c.new_text or ""))
    lines.append(f"reply new text equal to the expected one: {exact}/{len(texts)} ({corpus.share(exact, len(texts)):.1%})")
    overridden = [c for c, _ in results if c.note]
    lines.append(f"cases expected otherwise than their label says, or unlabelled: {len(overridden)} (see tests/corpus.py)")
    wrong = [f"  {c.name}: expected {c.expected.value}, got {g.kind.value} ({g.reason[:60]})"
             for c, g in results if g.kind is not c.expected]
    wrong += [f"  {c.name}: expected {'hard' if c.hard else 'soft'}, got {g.status or 'no status'} ({g.reason[:60]})"
              for c, g in scored if g.hard != c.hard]
    return "\n".join(lines + (["misclassified:", *wrong] if wrong else []))


def test_each_class_meets_its_target(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + _table(run))
    results = run.results
    _, _, _, _, bounce_recall = _precision_recall(results, Kind.BOUNCE)
    assert bounce_recall >= 0.99
    for kind in (Kind.AUTO_REPLY, Kind.REPLY):
        _, _, _, precision, recall = _precision_recall(results, kind)
        assert precision >= 0.97, kind
        assert recall >= 0.97, kind
    scored = _scored_bounces(results)
    assert corpus.share(_count(scored, lambda c, g: g.hard == c.hard), len(scored)) >= 0.95


def test_bounces_are_never_taken_for_answers(run: Run) -> None:
    """The dangerous mistake: a bounce read as a person's reply or an auto-reply stops nothing that should stop."""
    taken = [c.name for c, g in run.results if c.expected is Kind.BOUNCE and g.kind in (Kind.AUTO_REPLY, Kind.UNSUBSCRIBE)]
    assert taken == []


def test_failed_recipients_of_bounces(run: Run) -> None:
    bounces = [(c, g) for c, g in run.results if c.expected is Kind.BOUNCE and g.kind is Kind.BOUNCE and c.recipients]
    with_any = _count(bounces, lambda c, g: bool(g.recipients))
    as_many = _count(bounces, lambda c, g: len(g.recipients) == c.recipients)
    assert corpus.share(with_any, len(bounces)) >= 0.97
    assert corpus.share(as_many, len(bounces)) >= 0.90
    for case, got in bounces:
        text = _all_text(case.raw())
        for address in got.recipients:
            assert _ADDRESS.fullmatch(address), (case.name, address)
            assert address.encode() in text, (case.name, address)


def test_new_text_of_replies(run: Run) -> None:
    texts = [(c, g) for c, g in run.results if c.new_text is not None]
    exact = _count(texts, lambda c, g: _normalise(g.new_text) == _normalise(c.new_text or ""))
    assert corpus.share(exact, len(texts)) >= 0.95


def test_talon_reply_texts_start_with_the_new_text(run: Run) -> None:
    """talon's *_reply_text files keep the signature that our new text drops on purpose."""
    for case, got in run.results:
        if case.source == "talon" and case.note:
            assert _normalise(case.note).startswith(_normalise(got.new_text)), case.name


def test_the_corpus_classifies_quickly(run: Run) -> None:
    assert run.seconds < 30, "about a second is usual: something became pathologically slow"
