"""The classifier in the languages leads write (tests/data/languages): out-of-office notices and their
return dates, replies, opt-outs and the wording that must not pass for one, and subject prefixes.
Precision and recall per class are printed with the results and held to their targets; opt-out
precision must be perfect, so every case that is no opt-out is checked on its own."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from outreach.mail import subjects
from outreach.mail.inbound import Classification, Kind, classify
from tests import corpus

DATA = Path(__file__).resolve().parents[1] / "data" / "languages"
RECEIVED = dt.datetime(2024, 12, 5, 9, 0, tzinfo=dt.UTC)  # a Thursday
KINDS = (Kind.AUTO_REPLY, Kind.REPLY, Kind.UNSUBSCRIBE, Kind.BULK)


@dataclass(frozen=True)
class Case:
    id: str
    language: str
    kind: Kind
    raw: bytes
    back: dt.date | None  # the return date an auto-reply states, None when it states none
    states_back: bool  # whether `back` is given (auto-replies)


def _message(language: str, topic: str, number: int, case: dict[str, Any]) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Lead <lead-{language}@client.example>"
    msg["To"] = "asha@ours.example"
    msg["Subject"] = case.get("subject", f"Re: {topic}")
    msg["Date"] = "Thu, 05 Dec 2024 10:00:00 +0100"
    msg["Message-ID"] = f"<{language}-{number}@client.example>"
    if case.get("threaded", True):
        msg["In-Reply-To"] = "<proposal-1@ours.example>"
    for name, value in (case.get("headers") or {}).items():
        msg[name] = str(value)
    msg.set_content(str(case["body"]))
    return msg.as_bytes()


def _files() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DATA.glob("*.yaml")):
        yield path.stem, yaml.safe_load(path.read_text(encoding="utf-8"))


def _cases() -> list[Case]:
    cases = []
    for language, data in _files():
        for number, case in enumerate(data["cases"], start=1):
            cases.append(Case(f"{language}-{number:02d} {case['name']}", language, Kind(case["kind"]),
                              _message(language, data["topic"], number, case), case.get("back"), "back" in case))
    return cases


def _subject_pairs() -> list[tuple[str, str, str]]:
    return [(language, given, stripped) for language, data in _files() for given, stripped in data["subjects"]]


CASES = _cases()


@dataclass(frozen=True)
class Run:
    results: dict[str, Classification]
    seconds: float


@pytest.fixture(scope="module")
def run() -> Run:
    start = time.perf_counter()
    results = {case.id: classify(case.raw, received=RECEIVED) for case in CASES}
    return Run(results, time.perf_counter() - start)


def _scores(run: Run, kind: Kind, cases: list[Case] = CASES) -> tuple[int, int, int, float, float]:
    expected = sum(1 for case in cases if case.kind is kind)
    found = sum(1 for case in cases if run.results[case.id].kind is kind)
    right = sum(1 for case in cases if case.kind is kind and run.results[case.id].kind is kind)
    return expected, found, right, corpus.share(right, found), corpus.share(right, expected)


def _dated(run: Run) -> tuple[int, int]:
    """(right, stated): return dates read right among the auto-replies that state one."""
    stated = [case for case in CASES if case.kind is Kind.AUTO_REPLY and case.back is not None]
    return sum(1 for case in stated if run.results[case.id].until == case.back), len(stated)


def _table(run: Run) -> str:
    languages = sorted({case.language for case in CASES})
    lines = [f"inbound classification of {len(CASES)} constructed messages in {len(languages)} languages in {run.seconds:.1f} s",
             f"{'class':<14}{'expected':>9}{'found':>7}{'right':>7}{'precision':>11}{'recall':>8}"]
    for kind in KINDS:
        expected, found, right, precision, recall = _scores(run, kind)
        lines.append(f"{kind.value:<14}{expected:>9}{found:>7}{right:>7}{precision:>11.1%}{recall:>8.1%}")
    right, stated = _dated(run)
    lines.append(f"return dates right among the notices that state one: {right}/{stated} ({corpus.share(right, stated):.1%})")
    lines.append("by language: " + ", ".join(
        f"{code} {sum(1 for c in CASES if c.language == code and run.results[c.id].kind is c.kind)}/"
        f"{sum(1 for c in CASES if c.language == code)}" for code in languages))
    wrong = [f"  {c.id}: expected {c.kind.value}, got {run.results[c.id].kind.value} ({run.results[c.id].reason[:70]})"
             for c in CASES if run.results[c.id].kind is not c.kind]
    wrong += [f"  {c.id}: back {c.back}, read {run.results[c.id].until}"
              for c in CASES if c.kind is Kind.AUTO_REPLY and c.states_back and run.results[c.id].kind is Kind.AUTO_REPLY
              and run.results[c.id].until != c.back]
    return "\n".join(lines + (["missed:", *wrong] if wrong else []))


def test_each_class_meets_its_target(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + _table(run))
    assert [case.id for case in CASES if "error" in run.results[case.id].evidence] == []  # no rule raised on any of them
    for kind in (Kind.AUTO_REPLY, Kind.REPLY, Kind.BULK):
        _, _, _, precision, recall = _scores(run, kind)
        assert precision >= 0.98, kind
        assert recall >= 0.98, kind
    _, _, _, precision, recall = _scores(run, Kind.UNSUBSCRIBE)
    assert precision == 1.0
    assert recall >= 0.95
    right, stated = _dated(run)
    assert corpus.share(right, stated) >= 0.95


def test_every_language_has_each_kind_of_case() -> None:
    for language, data in _files():
        kinds = [Kind(case["kind"]) for case in data["cases"]]
        assert set(kinds) == set(KINDS), language
        notices = [case for case in data["cases"] if case["kind"] == "auto_reply"]
        assert any(case.get("headers") for case in notices) and any(not case.get("headers") for case in notices), language
        assert any(case.get("back") for case in notices), language
        assert data["subjects"], language


@pytest.mark.parametrize("case", [c for c in CASES if c.kind is not Kind.UNSUBSCRIBE], ids=lambda c: c.id)
def test_nothing_else_is_read_as_an_opt_out(run: Run, case: Case) -> None:
    got = run.results[case.id]
    assert got.kind is not Kind.UNSUBSCRIBE, got.evidence
    assert "error" not in got.evidence


@pytest.mark.parametrize(("language", "given", "stripped"), _subject_pairs(), ids=lambda v: str(v))
def test_subject_prefixes_come_off(language: str, given: str, stripped: str) -> None:
    assert subjects.strip(given) == stripped
    assert subjects.reply_subject(given) == f"Re: {stripped}"
    assert subjects.thread_key(given) == subjects.thread_key(subjects.reply_subject(stripped))
