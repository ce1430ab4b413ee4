from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.sequences.calendar import BusinessCalendar, Window
from outreach.sequences.delays import ALWAYS_OPEN, LONGEST, SHORTEST, Delay, OpenWeek, Unit


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
        ("1000000 weeks", r"longer than the longest wait, 5 years \(260 weeks\)"),
        ("100000000000000000000000000 days", r"longer than the longest wait, 5 years \(1826 days\)"),
        ("99999999 business hours", r"longer than the longest wait, 5 years \(43830 business hours\)"),
        ("99999999 business days", r"\(1826 business days\)"),
        ("61 months", r"\(60 months\)"),
        ("261 weeks", "longer than the longest wait"),
        ("1826.26 days", "longer than the longest wait"),
        ("0.0000001 minutes", "shorter than the shortest wait, 0.5 minutes"),
        ("0 days", "shorter than the shortest wait"),
        ("every 0 minutes", "shorter than the shortest wait"),
        ("0.49 minutes", "shorter than the shortest wait"),
        ("0-3 days", "starts below the shortest wait"),
        ("\u0663 days", "is not a delay"),  # an Arabic-Indic 3: digits are ASCII
        ("\u00b2", "is not a delay"),
        pytest.param(10**5000, "this number has no unit", id="a-5001-digit-int"),
        pytest.param("9" * 400 + " days", "longer than the longest wait", id="400-digits"),
    ],
)
def test_rejects_with_a_hint(text: object, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        Delay.parse(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0.5 minutes", "0.5 minutes"),
        ("0.00005 weeks", "0.00005 weeks"),  # 30.24 seconds: written out, never 5e-05
        ("60 months", "60 months"),
        ("260 weeks", "260 weeks"),
        ("1826.25 days", "1826.25 days"),
        ("43830 business hours", "43830 business hours"),
        ("1826 business days", "1826 business days"),
        ("1.50 hours", "1.5 hours"),
        ("every 1 month", "1 month"),
    ],
)
def test_accepts_the_edges_and_writes_them_back(text: str, shown: str) -> None:
    delay = Delay.parse(text)
    assert str(delay) == shown
    assert Delay.parse(shown) == delay


def test_a_stored_definition_from_before_the_bounds_still_reads() -> None:
    assert Delay.parse("0 days", bounded=False) == Delay(0, 0, Unit.DAYS)
    with pytest.raises(ValueError, match="shorter than the shortest wait"):
        Delay.parse("0 days")


@given(st.integers(1, 60), st.integers(1, 60), st.sampled_from(["minutes", "hours", "days", "weeks", "months"]))
def test_round_trips_through_its_text(a: int, b: int, unit: str) -> None:
    low, high = sorted((a, b))
    delay = Delay.parse(f"{low}-{high} {unit}")
    assert Delay.parse(str(delay)) == delay


@given(st.integers(1, 60), st.integers(1, 60), st.randoms(use_true_random=False))
def test_samples_stay_in_the_range(a: int, b: int, rng: random.Random) -> None:
    low, high = sorted((a, b))
    for unit in ("days", "business days", "months"):
        value = Delay.parse(f"{low}-{high} {unit}").sample(rng)
        assert low <= value <= high
        if unit != "days":
            assert value == int(value)


amounts = st.one_of(
    st.integers(0, 2000).map(str),
    st.integers(0, 10**30).map(str),
    st.tuples(st.floats(0, 3000), st.integers(0, 12)).map(lambda pair: f"{pair[0]:.{pair[1]}f}"),
    st.from_regex(r"\A[0-9]{1,4}\.[0-9]{1,12}\Z"),
)
units = st.sampled_from(["minute", "minutes", "min", "hours", "h", "days", "d", "weeks", "w", "month", "months", "business hours", "business days"])


@st.composite
def delay_texts(draw: st.DrawFn) -> str:
    low, high = draw(amounts), draw(st.none() | amounts)
    every = draw(st.sampled_from(["", "every "]))
    return f"{every}{low}{'' if high is None else draw(st.sampled_from(['-', ' to ', '–'])) + high} {draw(units)}"


@given(delay_texts())
def test_an_accepted_delay_round_trips_and_lies_within_the_bounds(text: str) -> None:
    try:
        delay = Delay.parse(text)
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 200, str(exc)
        return
    again = Delay.parse(str(delay))
    assert again == delay and str(again) == str(delay)
    assert SHORTEST <= delay.shortest() <= delay.longest() <= LONGEST


@given(st.text(max_size=60) | st.integers() | st.floats() | st.none())
def test_anything_else_is_a_delay_or_one_line_saying_why_not(value: object) -> None:
    try:
        delay = Delay.parse(value)
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300, str(exc)
        return
    assert Delay.parse(str(delay)) == delay


@st.composite
def open_windows(draw: st.DrawFn) -> Window:
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 23 * 60 - 1))
    end = draw(st.integers(start + 1, 23 * 60 + 59))
    return Window(frozenset(days), dt.time(start // 60, start % 60), dt.time(end // 60, end % 60))


@settings(deadline=None)
@given(delay_texts(), open_windows(), st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2035, 1, 1), timezones=st.just(dt.UTC)), st.randoms(use_true_random=False))
def test_a_wait_within_the_bounds_of_its_window_lands_within_them(text: str, window: Window, start: dt.datetime, rng: random.Random) -> None:
    """What the loader accepts for a sequence's window is planned without overflow, about LONGEST at most."""
    try:
        delay = Delay.parse(text)
    except ValueError:
        return
    if delay.longest(window.open_week()) > LONGEST:
        return  # the loader refuses it for this window (tests/unit/test_sequence_bounds.py)
    at = BusinessCalendar(ZoneInfo("UTC"), window).after(start, delay, rng)
    assert start <= at <= start + LONGEST + dt.timedelta(days=8)


def test_business_time_stretches_with_the_window() -> None:
    hours, days = Delay.parse("40 business hours"), Delay.parse("5 business days")
    assert hours.longest() == dt.timedelta(hours=40) and days.longest() == dt.timedelta(days=5)
    office = OpenWeek(days=5, hours=8)
    assert hours.longest(office) == days.longest(office) == dt.timedelta(days=7)
    assert Delay.parse("3 days").longest(office) == Delay.parse("3 days").longest(ALWAYS_OPEN)
