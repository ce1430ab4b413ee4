from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.sequences.delays import Delay, Unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 days", Delay(3, 3, Unit.DAYS)),
        ("2-3 days", Delay(2, 3, Unit.DAYS)),
        ("2 to 3 days", Delay(2, 3, Unit.DAYS)),
        ("4 business hours", Delay(4, 4, Unit.HOURS, business=True)),
        ("2 business days", Delay(2, 2, Unit.DAYS, business=True)),
        ("every 1 month", Delay(1, 1, Unit.MONTHS)),
        ("30-45 days", Delay(30, 45, Unit.DAYS)),
        ("1 week", Delay(1, 1, Unit.WEEKS)),
        ("90 minutes", Delay(90, 90, Unit.MINUTES)),
    ],
)
def test_parses_what_managers_write(text: str, expected: Delay) -> None:
    assert Delay.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("3", "has no unit"),
        (3, "has no unit"),
        ("3 fortnights", "unknown unit"),
        ("5-2 days", "backwards"),
        ("2 business weeks", "only hours and days"),
        ("1.5 business days", "whole days"),
        ("soon", "is not a delay"),
        (True, "is not a delay"),
    ],
)
def test_rejects_with_a_hint(text: object, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        Delay.parse(text)


@given(st.integers(0, 400), st.integers(0, 400), st.sampled_from(["minutes", "hours", "days", "weeks", "months"]))
def test_round_trips_through_its_text(a: int, b: int, unit: str) -> None:
    low, high = sorted((a, b))
    delay = Delay.parse(f"{low}-{high} {unit}")
    assert Delay.parse(str(delay)) == delay


@given(st.integers(0, 60), st.integers(0, 60), st.randoms(use_true_random=False))
def test_samples_stay_in_the_range(a: int, b: int, rng: random.Random) -> None:
    low, high = sorted((a, b))
    for unit in ("days", "business days", "months"):
        value = Delay.parse(f"{low}-{high} {unit}").sample(rng)
        assert low <= value <= high
        if unit != "days":
            assert value == int(value)
