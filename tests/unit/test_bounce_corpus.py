"""Bounces against both corpora: detected, read for their reason, and acted on (suppress or not).

The first corpus is sisimai's (its labels give the reason per recipient and whether the address
does not exist); the second is the test mail of other bounce parsers (flufl.bounce, bounced and
bounce_email, Mail::DeliveryStatus::BounceParser) and constructed cases. The tables are printed
with the results; docs/bounces.md keeps the figures of the last run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from outreach.mail.bounce_reasons import Effect, effect_of, parse
from outreach.mail.inbound import Classification, Kind, classify
from tests import corpus

# The targets: detection and the decision to suppress must be nearly always right. Reason agreement
# with sisimai is held at what the rules reach (see docs/bounces.md for where and why they differ).
DETECTION = 0.995
SUPPRESS = 0.97
SUPPRESS_CORPUS2 = 0.99
REASON_SISIMAI = 0.90
REASON_CORPUS2 = 0.98


@dataclass(frozen=True)
class Runs:
    sisimai: list[tuple[corpus.Case, Classification]]
    second: list[tuple[corpus.Labelled, Classification]]


@pytest.fixture(scope="module")
def runs() -> Runs:
    corpus.require()
    sisimai = [(case, classify(case.raw())) for case in corpus.sisimai_cases()]
    second = [(case, classify(case.path.read_bytes())) for case in corpus.corpus2_cases()]
    return Runs(sisimai, second)


def _suppresses(found: Classification) -> bool:
    return effect_of(parse(found.cause), permanent=bool(found.hard)) is Effect.SUPPRESS


def _expected(reason: str) -> str:
    """sisimai's 'onhold' (it could not decide) is our 'undefined'."""
    return "undefined" if reason == "onhold" else reason


def _agrees(expected: str, found: str | None) -> bool:
    return found == _expected(expected)


def _sisimai_bounces(runs: Runs) -> list[tuple[corpus.Case, Classification]]:
    return [(c, g) for c, g in runs.sisimai if c.expected is Kind.BOUNCE and g.kind is Kind.BOUNCE and c.reason]


def _per_reason(pairs: Sequence[tuple[str, str | None]]) -> list[str]:
    """Precision and recall per reason, from (expected, found) pairs."""
    expected = Counter(_expected(e) for e, _ in pairs)
    found = Counter(g or "-" for _, g in pairs)
    right = Counter(_expected(e) for e, g in pairs if _agrees(e, g))
    lines = [f"  {'reason':<16}{'expected':>9}{'found':>7}{'right':>7}{'precision':>11}{'recall':>8}"]
    for reason in sorted(set(expected) | set(found)):
        lines.append(f"  {reason:<16}{expected[reason]:>9}{found[reason]:>7}{right[reason]:>7}{corpus.share(right[reason], found[reason]):>11.1%}{corpus.share(right[reason], expected[reason]):>8.1%}")
    return lines


def _second_kind(case: corpus.Labelled, found: Classification) -> bool:
    return found.kind is case.kind if case.kind is not None else found.kind not in (Kind.BOUNCE, Kind.COMPLAINT)


def _table(runs: Runs) -> str:
    lines = []
    bounces = _sisimai_bounces(runs)
    pairs = [(c.reason or "", g.cause) for c, g in bounces]
    agree = sum(1 for e, g in pairs if _agrees(e, g))
    lines.append(f"sisimai: reason of {len(bounces)} detected bounces agrees with sisimai's: {agree} ({corpus.share(agree, len(bounces)):.1%})")
    lines += _per_reason(pairs)
    right = sum(1 for c, g in bounces if _suppresses(g) == c.suppress)
    lines.append(f"sisimai: suppress or not right: {right}/{len(bounces)} ({corpus.share(right, len(bounces)):.1%})")
    for project in corpus.PROJECTS:
        cases = [(c, g) for c, g in runs.second if c.project == project]
        lines.append(f"{project}: {len(cases)} messages")
        lines.append(f"  {'class':<16}{'expected':>9}{'found':>7}{'right':>7}{'precision':>11}{'recall':>8}")
        for kind in (Kind.BOUNCE, Kind.COMPLAINT, Kind.DELIVERY_NOTICE, None):
            name = kind.value if kind else "not a bounce"
            expected = sum(1 for c, _ in cases if c.kind is kind)
            found = sum(1 for c, g in cases if (g.kind is kind if kind else g.kind not in (Kind.BOUNCE, Kind.COMPLAINT, Kind.DELIVERY_NOTICE)))
            hits = sum(1 for c, g in cases if c.kind is kind and _second_kind(c, g))
            if expected or found:
                lines.append(f"  {name:<16}{expected:>9}{found:>7}{hits:>7}{corpus.share(hits, found):>11.1%}{corpus.share(hits, expected):>8.1%}")
        reasoned = [(c, g) for c, g in cases if c.reasons and g.kind is Kind.BOUNCE]
        if reasoned:
            agree = sum(1 for c, g in reasoned if g.cause in c.reasons)
            lines.append(f"  reason agrees with the project's: {agree}/{len(reasoned)} ({corpus.share(agree, len(reasoned)):.1%})")
    constructed = [(next(iter(c.reasons)), g.cause) for c, g in runs.second if c.project == "constructed" and c.reasons]
    lines.append("constructed: per reason")
    lines += _per_reason(constructed)
    wrong = [f"  {c.name}: expected {c.kind.value if c.kind else 'not a bounce'}, got {g.kind.value} ({g.reason[:60]})" for c, g in runs.second if not _second_kind(c, g)]
    wrong += [f"  {c.name}: expected {'/'.join(sorted(c.reasons))}, got {g.cause}" for c, g in runs.second if c.reasons and g.kind is Kind.BOUNCE and g.cause not in c.reasons]
    return "\n".join(lines + (["second corpus, differing:", *wrong] if wrong else []))


def test_bounces_are_detected(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + _table(runs))
    first = [(c, g) for c, g in runs.sisimai if c.expected is Kind.BOUNCE]
    assert corpus.share(sum(1 for _, g in first if g.kind is Kind.BOUNCE), len(first)) >= DETECTION
    second = [(c, g) for c, g in runs.second if c.kind is Kind.BOUNCE]
    assert corpus.share(sum(1 for _, g in second if g.kind is Kind.BOUNCE), len(second)) >= DETECTION
    taken = [(c, g) for c, g in runs.second if g.kind is Kind.BOUNCE]
    assert corpus.share(sum(1 for c, _ in taken if c.kind is Kind.BOUNCE), len(taken)) >= DETECTION, "precision"


def test_the_reason_agrees_with_the_source_projects(runs: Runs) -> None:
    bounces = _sisimai_bounces(runs)
    assert corpus.share(sum(1 for c, g in bounces if _agrees(c.reason or "", g.cause)), len(bounces)) >= REASON_SISIMAI
    reasoned = [(c, g) for c, g in runs.second if c.reasons and g.kind is Kind.BOUNCE]
    assert corpus.share(sum(1 for c, g in reasoned if g.cause in c.reasons), len(reasoned)) >= REASON_CORPUS2
    constructed = [(c, g) for c, g in reasoned if c.project == "constructed"]
    assert [(c.name, g.cause) for c, g in constructed if g.cause not in c.reasons] == []


def test_suppress_or_not(runs: Runs) -> None:
    bounces = _sisimai_bounces(runs)
    assert corpus.share(sum(1 for c, g in bounces if _suppresses(g) == c.suppress), len(bounces)) >= SUPPRESS
    known = [(c, g) for c, g in runs.second if c.suppress is not None and g.kind is Kind.BOUNCE]
    assert corpus.share(sum(1 for c, g in known if _suppresses(g) == c.suppress), len(known)) >= SUPPRESS_CORPUS2


def test_failed_recipients_of_the_second_corpus(runs: Runs) -> None:
    stated = [(c, g) for c, g in runs.second if c.recipients and g.kind is c.kind]
    right = sum(1 for c, g in stated if set(g.recipients) == set(c.recipients))
    assert corpus.share(right, len(stated)) >= 0.98
    for case, found in runs.second:
        if case.project == "constructed" and case.recipients:
            assert found.recipients == case.recipients, case.name


def test_no_message_raises(runs: Runs) -> None:
    """Every message is read by a rule: none falls back to 'unreadable' because a rule raised."""
    fallen = [c.name for c, g in runs.sisimai if g.reason == "unreadable message"]
    fallen += [c.name for c, g in runs.second if g.reason == "unreadable message"]
    assert fallen == []
