"""A sequence's waits, measured against its own window, and its repeat against one round of its steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach.errors import SequenceError
from outreach.sequences.loader import from_definition, load_sequence_file
from outreach.sequences.schema import Sequence, out_of_bounds

ROOT = Path(__file__).resolve().parents[2]


def _steps(*afters: str) -> list[dict[str, Any]]:
    return [{"id": "intro", "template": "t"}] + [{"id": f"s{i}", "after": after, "template": "t"} for i, after in enumerate(afters)]


def _bounds(**data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    return out_of_bounds(Sequence.model_validate({"name": "x", **data}))


@pytest.mark.parametrize("path", sorted((ROOT / "sequences").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_sequences_are_within_the_bounds(path: Path) -> None:
    assert out_of_bounds(load_sequence_file(path).definition) == []


def test_a_repeat_shorter_than_a_round_of_its_steps_is_refused() -> None:
    assert _bounds(steps=_steps("5-10 days"), repeat="every 1 week") == [
        (("repeat",), "every 1 week is shorter than one round of the steps (up to 10 days); repeat every 10 days or more")
    ]
    assert _bounds(steps=_steps("5-10 days"), repeat="every 10 days") == []
    assert _bounds(steps=_steps("5 business days"), repeat="every 1 week") == []  # a business week is a week
    assert _bounds(steps=_steps("5 business days"), repeat="every 5 business days") == []
    assert _bounds(steps=_steps("6 business days"), repeat="every 5 business days")[0][0] == ("repeat",)
    assert _bounds(steps=_steps(), repeat="every 1 minute") == []  # one email a round


def test_at_counts_from_the_start_of_the_round() -> None:
    steps = [{"id": "a", "template": "t"}, {"id": "b", "at": "3 days", "template": "t"}, {"id": "c", "at": "10 days", "template": "t"}]
    assert _bounds(steps=steps, repeat="every 10 days") == []
    assert _bounds(steps=steps, repeat="every 9 days")[0][0] == ("repeat",)


def test_steps_longer_than_five_years_in_all_are_refused() -> None:
    assert _bounds(steps=_steps("100 weeks", "150 weeks")) == []
    assert _bounds(steps=_steps("30 months", "31 months")) == [(("steps",), "the steps take more than 5 years from the first to the last; shorten the waits")]
    assert _bounds(steps=_steps(*["260 weeks"] * 3000))[0][0] == ("steps",)


def test_business_time_is_measured_in_the_sequence_window() -> None:
    narrow = {"days": "mon", "hours": "09:00-09:01"}
    assert _bounds(steps=_steps("4 business hours"), window=narrow) == []
    (where, message), *_ = _bounds(steps=_steps("10 business hours"), window=narrow)
    assert where == ("steps", 1, "after")
    assert message == "10 business hours in the window mon 09:00-09:01 takes up to 4200 days, longer than the longest wait, 5 years; shorten it or widen the window"
    assert _bounds(steps=_steps("1000 business days"), window={"days": "mon-fri"}) == []
    assert _bounds(steps=_steps("1000 business days"), window={"days": "sat,sun"})[0][0] == ("steps", 1, "after")
    escalating = _bounds(steps=_steps(), window=narrow, escalate={"after": "1000 business hours"}, reply_sla="1000 business hours")
    assert [where for where, _ in escalating] == [("reply_sla",), ("escalate", "after")]


def test_the_loader_locates_a_wait_too_long_for_the_window(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text('name: narrow\nwindow: {days: mon, hours: "09:00-09:01"}\nsteps:\n  - id: intro\n    template: t\n  - id: nudge\n    after: 10 business hours\n    template: t\n')
    with pytest.raises(SequenceError) as caught:
        load_sequence_file(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:7:12: steps[1].after: 10 business hours in the window mon 09:00-09:01 takes up to 4200 days, longer than the longest wait, 5 years; shorten it or widen the window"
    ]


def test_a_definition_stored_before_the_bounds_still_loads() -> None:
    """Versions already in the database were valid when stored; enrollments on them must keep working."""
    stored = {"name": "old", "steps": _steps("0 days", "0 minutes"), "repeat": {"every": "0 minutes"}}
    definition = from_definition(stored)
    assert str(definition.steps[1].after) == "0 days"
    with pytest.raises(ValueError, match="shorter than the shortest wait"):
        Sequence.model_validate(stored)
