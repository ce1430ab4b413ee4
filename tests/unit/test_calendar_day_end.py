"""A sending window until 24:00 runs to the end of the day: 00:00-24:00 is never closed."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.sequences.calendar import BusinessCalendar, Window, parse_hours
from outreach.sequences.delays import Delay
from outreach.sequences.schema import WindowSpec

UTC = dt.UTC
# zones with daylight saving (some change at midnight), half and quarter hours, and none
ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin", "Australia/Sydney", "America/Santiago", "Asia/Beirut", "America/Havana", "Asia/Kathmandu", "Pacific/Chatham"]

instants = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 12, 31), timezones=st.just(UTC))
zones = st.sampled_from(ZONES).map(ZoneInfo)
near_midnight = st.timedeltas(min_value=-dt.timedelta(minutes=2), max_value=dt.timedelta(minutes=2))


@st.composite
def zoned_instants(draw: st.DrawFn) -> tuple[ZoneInfo, dt.datetime]:
    """A zone and an instant, half of them within two minutes of a local midnight, where windows end."""
    tz = draw(zones)
    if draw(st.booleans()):
        return tz, draw(instants)
    day = draw(st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2030, 12, 31)))
    return tz, dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC) + draw(near_midnight)


def _all_day(tz: ZoneInfo, days: str = "mon-sun") -> BusinessCalendar:
    return BusinessCalendar(tz, Window.parse(days, "00:00-24:00"))


@settings(max_examples=500, deadline=None)
@given(zoned_instants())
def test_with_window_00_00_to_24_00_every_instant_is_open(zoned: tuple[ZoneInfo, dt.datetime]) -> None:
    tz, when = zoned
    cal = _all_day(tz)
    assert cal.is_open(when)
    assert cal.next_open(when) == when


@settings(max_examples=300, deadline=None)
@given(zoned_instants(), st.sets(st.integers(0, 6), min_size=1))
def test_a_window_until_24_00_is_open_exactly_on_its_days(zoned: tuple[ZoneInfo, dt.datetime], days: set[int]) -> None:
    tz, when = zoned
    cal = BusinessCalendar(tz, Window(frozenset(days), dt.time(0), parse_hours("00:00-24:00")[1]))
    assert cal.is_open(when) == (when.astimezone(tz).weekday() in days)
    opened = cal.next_open(when)
    assert opened >= when and cal.is_open(opened)
    assert opened == when or opened == cal.opens_at(opened.astimezone(tz).date())


@settings(max_examples=300, deadline=None)
@given(zoned_instants(), st.floats(0.25, 72))
def test_business_hours_in_an_all_day_window_are_plain_hours(zoned: tuple[ZoneInfo, dt.datetime], hours: float) -> None:
    tz, when = zoned
    assert abs(_all_day(tz).add_business_hours(when, hours) - (when + dt.timedelta(hours=hours))) < dt.timedelta(milliseconds=1)


@settings(max_examples=200, deadline=None)
@given(zoned_instants(), st.sampled_from([None, "90 minutes", "3 days", "2-3 days", "4 business hours", "2 business days", "1 month"]), st.integers(0, 2**32))
def test_a_planned_time_in_a_window_until_midnight_is_open(zoned: tuple[ZoneInfo, dt.datetime], text: str | None, seed: int) -> None:
    tz, start = zoned
    cal = BusinessCalendar(tz, Window.parse("mon-fri", "18:00-24:00"))
    when = cal.after(start, Delay.parse(text) if text else None, random.Random(seed))
    assert when >= start and cal.is_open(when)


def test_the_last_minute_of_the_day_is_open_and_midnight_belongs_to_the_next_day() -> None:
    ist = ZoneInfo("Asia/Kolkata")
    cal = BusinessCalendar(ist, Window.parse("mon-fri", "18:00-24:00"))
    friday_late = dt.datetime(2026, 11, 27, 23, 59, 30, tzinfo=ist)
    assert cal.is_open(friday_late) and cal.next_open(friday_late) == friday_late
    assert cal.closes_at(dt.date(2026, 11, 27)) == dt.datetime(2026, 11, 28, 0, 0, tzinfo=ist)
    assert not cal.is_open(dt.datetime(2026, 11, 28, 0, 0, tzinfo=ist))  # Saturday
    assert cal.next_open(dt.datetime(2026, 11, 28, 0, 0, tzinfo=ist)) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=ist)
    assert cal.window.describe() == "mon-fri 18:00-24:00"


def test_24_00_is_the_only_way_to_write_the_end_of_the_day() -> None:
    assert parse_hours("00:00-24:00") == (dt.time(0), dt.time(0))
    assert WindowSpec(hours="00:00-24:00").build().until_midnight
    assert not Window.parse("mon-fri", "09:00-23:59").until_midnight
    for wrong in ("09:00-00:00", "00:00-00:00", "24:00-24:00", "09:00-24:30", "09:00-25:00"):
        with pytest.raises(ValueError):
            parse_hours(wrong)
    with pytest.raises(ValueError, match="end after it starts"):
        Window(frozenset({0}), dt.time(10), dt.time(9))
