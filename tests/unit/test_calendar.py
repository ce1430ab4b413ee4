from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.sequences.calendar import BusinessCalendar, NeverOpen, Window, country_holidays, parse_days, parse_hours
from outreach.sequences.delays import Delay

UTC = dt.timezone.utc
ZONES = ["Asia/Kolkata", "America/New_York", "Europe/Berlin", "Australia/Sydney", "America/Los_Angeles", "UTC", "Asia/Kathmandu"]
COUNTRIES = [None, "IN", "US", "DE", "AU", "GB"]

instants = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 12, 31), timezones=st.just(UTC))


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    start_h = draw(st.integers(0, 20))
    end_h = draw(st.integers(start_h + 1, 23))
    window = Window(frozenset(days), dt.time(start_h, draw(st.sampled_from([0, 30]))), dt.time(end_h, 59))
    country = draw(st.sampled_from(COUNTRIES))
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    if country:
        return BusinessCalendar(tz=tz, window=window, holidays=country_holidays(country))
    return BusinessCalendar(tz=tz, window=window)


delays = st.sampled_from(
    [None, "3 days", "2-3 days", "4 business hours", "2 business days", "1 week", "1 month", "90 minutes", "30-45 days", "2-5 business days"]
)


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, delays, st.integers(0, 2**32))
def test_a_planned_time_is_always_open_and_never_earlier(cal: BusinessCalendar, start: dt.datetime, text: str | None, seed: int) -> None:
    when = cal.after(start, Delay.parse(text) if text else None, random.Random(seed))
    assert when >= start
    assert cal.is_open(when)
    local = when.astimezone(cal.tz)
    assert local.date() not in cal.holidays
    assert local.weekday() in cal.window.days


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, st.integers(0, 15))
def test_business_days_count_only_business_days(cal: BusinessCalendar, start: dt.datetime, n: int) -> None:
    when = cal.add_business_days(start, n)
    first, last = start.astimezone(cal.tz).date(), when.astimezone(cal.tz).date()
    counted = sum(1 for i in range(1, (last - first).days + 1) if cal.is_business_day(first + dt.timedelta(days=i)))
    # the count is n, plus one when the time of day fell after the window and moved on
    assert counted in (n, n + 1)
    assert cal.is_open(when)


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, st.floats(0.25, 30))
def test_business_hours_consume_exactly_that_much_open_time(cal: BusinessCalendar, start: dt.datetime, hours: float) -> None:
    end = cal.add_business_hours(start, hours)
    assert cal.is_open(end) or end == _window_end(cal, end)
    assert abs(_open_time(cal, start, end) - dt.timedelta(hours=hours)) < dt.timedelta(seconds=1)


def _window_end(cal: BusinessCalendar, when: dt.datetime) -> dt.datetime:
    day = when.astimezone(cal.tz).date()
    return dt.datetime.combine(day, cal.window.end, tzinfo=cal.tz).astimezone(UTC)


def _open_time(cal: BusinessCalendar, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """Exact open time between two instants: the overlap with each day's window."""
    total = dt.timedelta()
    day = start.astimezone(cal.tz).date() - dt.timedelta(days=1)
    while day <= end.astimezone(cal.tz).date():
        if cal.is_business_day(day):
            w0 = dt.datetime.combine(day, cal.window.start, tzinfo=cal.tz).astimezone(UTC)
            w1 = dt.datetime.combine(day, cal.window.end, tzinfo=cal.tz).astimezone(UTC)
            overlap = min(w1, end) - max(w0, start)
            if overlap > dt.timedelta():
                total += overlap
        day += dt.timedelta(days=1)
    return total


IST = ZoneInfo("Asia/Kolkata")
NY = ZoneInfo("America/New_York")


def _cal(tz: ZoneInfo, days: str = "mon-fri", hours: str = "09:00-17:30", country: str | None = None) -> BusinessCalendar:
    window = Window.parse(days, hours)
    return BusinessCalendar(tz, window, country_holidays(country)) if country else BusinessCalendar(tz, window)


def test_after_hours_moves_to_next_morning() -> None:
    cal = _cal(IST)
    friday_evening = dt.datetime(2026, 11, 27, 18, 0, tzinfo=IST)
    assert cal.next_open(friday_evening.astimezone(UTC)) == dt.datetime(2026, 11, 30, 9, 0, tzinfo=IST)


def test_republic_day_is_skipped_in_india() -> None:
    cal = _cal(IST, country="IN")
    # 26 Jan 2027 is a Tuesday and a national holiday
    monday = dt.datetime(2027, 1, 25, 16, 0, tzinfo=IST).astimezone(UTC)
    assert cal.add_business_days(monday, 1).astimezone(IST).date() == dt.date(2027, 1, 27)


def test_independence_day_is_skipped_in_the_us() -> None:
    cal = _cal(NY, country="US")
    assert not cal.is_business_day(dt.date(2029, 7, 4))
    assert cal.next_open(dt.datetime(2029, 7, 4, 10, 0, tzinfo=NY).astimezone(UTC)) == dt.datetime(2029, 7, 5, 9, 0, tzinfo=NY)


def test_calendar_days_keep_the_wall_clock_across_dst() -> None:
    cal = _cal(NY)
    # US clocks go back on Sun 1 Nov 2026; 10:00 on Thursday + 7 days is 10:00 the next Thursday
    start = dt.datetime(2026, 10, 29, 10, 0, tzinfo=NY).astimezone(UTC)
    later = cal.after(start, Delay.parse("7 days"), random.Random(0))
    assert later.astimezone(NY).replace(tzinfo=None) == dt.datetime(2026, 11, 5, 10, 0)
    assert later - start == dt.timedelta(days=7, hours=1)


def test_post_purchase_follow_up_lands_two_to_five_business_days_later_never_on_a_weekend() -> None:
    cal = _cal(NY, hours="09:00-17:00", country="US")
    friday = dt.datetime(2026, 12, 4, 15, 0, tzinfo=NY).astimezone(UTC)
    seen = set()
    for seed in range(200):
        local = cal.after(friday, Delay.parse("2-5 business days"), random.Random(seed)).astimezone(NY)
        assert local.weekday() < 5
        seen.add(local.date())
    assert seen == {dt.date(2026, 12, 8), dt.date(2026, 12, 9), dt.date(2026, 12, 10), dt.date(2026, 12, 11)}


def test_four_business_hours_from_late_afternoon_continue_next_morning() -> None:
    cal = _cal(IST, hours="09:00-17:00")
    start = dt.datetime(2026, 11, 24, 15, 0, tzinfo=IST).astimezone(UTC)
    assert cal.add_business_hours(start, 4).astimezone(IST) == dt.datetime(2026, 11, 25, 11, 0, tzinfo=IST)


def test_a_window_that_never_opens_says_so() -> None:
    cal = BusinessCalendar(IST, Window(frozenset({5}), dt.time(9), dt.time(10)), holidays=_AllDays())
    with pytest.raises(NeverOpen):
        cal.next_open(dt.datetime(2026, 1, 1, tzinfo=UTC))


class _AllDays:
    def __contains__(self, day: object) -> bool:
        return True


@pytest.mark.parametrize(("spec", "days"), [("mon-fri", {0, 1, 2, 3, 4}), ("fri-mon", {4, 5, 6, 0}), ("mon,wed,fri", {0, 2, 4}), (["sat", "sun"], {5, 6})])
def test_day_specs(spec: object, days: set[int]) -> None:
    assert parse_days(spec) == frozenset(days)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["9-5", "17:00-09:00", "25:00-26:00"])
def test_bad_hours_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(spec)
