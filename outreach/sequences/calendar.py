"""The business calendar: sending windows, business days and hours, time zones, holidays.

Pure: no clock, no I/O. Every instant in and out is a timezone-aware UTC datetime; local time
is only used inside, so daylight-saving changes are handled by zoneinfo.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from outreach.sequences.delays import Delay, OpenWeek, Unit

UTC = dt.timezone.utc
MIDNIGHT = dt.time(0)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_SCAN_DAYS = 800  # a window must open at least once in this many days


class NeverOpen(ValueError):
    """The window never opens (no days, or every day a holiday)."""


class HolidaySet(Protocol):
    def __contains__(self, day: object) -> bool: ...


@dataclass(frozen=True)
class Window:
    """The hours of the days on which sending is allowed, in local time.

    An `end` of 00:00 is midnight at the end of the day (written 24:00), so 00:00-24:00 is the
    whole day; no other window ends at or before its start."""

    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.until_midnight and self.end <= self.start:
            raise ValueError(f"{self.describe()}: the window must end after it starts, on the same day")

    @classmethod
    def parse(cls, days: str | Iterable[str] = "mon-fri", hours: str = "09:00-17:00") -> Window:
        start, end = parse_hours(hours)
        return cls(days=parse_days(days), start=start, end=end)

    @property
    def until_midnight(self) -> bool:
        return self.end == MIDNIGHT

    def contains(self, time: dt.time) -> bool:
        """Is this local time of day inside the hours (whatever the day)?"""
        return self.start <= time and (self.until_midnight or time < self.end)

    def describe(self) -> str:
        return f"{format_days(self.days)} {self.start:%H:%M}-{'24:00' if self.until_midnight else f'{self.end:%H:%M}'}"

    def open_week(self) -> OpenWeek:
        start, end = (dt.datetime.combine(dt.date.min, t) for t in (self.start, self.end))
        return OpenWeek(days=len(self.days), hours=(end - start).total_seconds() / 3600)


def parse_days(spec: str | Iterable[str]) -> frozenset[int]:
    parts = [p.strip().lower() for p in spec.split(",")] if isinstance(spec, str) else [str(p).strip().lower() for p in spec]
    result: set[int] = set()
    for part in parts:
        if part in ("every day", "daily", "all", "mon-sun"):
            result.update(range(7))
            continue
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day(first), _day(last)
            index = a
            while True:
                result.add(index)
                if index == b:
                    break
                index = (index + 1) % 7
        else:
            result.add(_day(part))
    if not result:
        raise ValueError("no days given; write e.g. 'mon-fri' or 'mon,wed,fri'")
    return frozenset(result)


def _day(name: str) -> int:
    key = name.strip()[:3]
    if key not in DAY_NAMES or not name.strip():
        raise ValueError(f"{name!r} is not a day; use mon, tue, wed, thu, fri, sat, sun (e.g. 'mon-fri')")
    return DAY_NAMES.index(key)


def format_days(days: frozenset[int]) -> str:
    ordered = sorted(days)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{DAY_NAMES[ordered[0]]}-{DAY_NAMES[ordered[-1]]}"
    return ",".join(DAY_NAMES[d] for d in ordered)


_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(spec: str) -> tuple[dt.time, dt.time]:
    """'09:00-17:30' as its start and end; an end of 24:00 is the end of the day (00:00, see Window)."""
    match = _HOURS.match(str(spec))
    if not match:
        raise ValueError(f"{spec!r} is not a time range; write e.g. '09:00-17:30'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if not (h1 < 24 and m1 < 60 and m2 < 60 and (h2 < 24 or (h2, m2) == (24, 0))):
        raise ValueError(f"{spec!r}: hours go from 00:00 to 24:00")
    if h2 * 60 + m2 <= h1 * 60 + m1:
        raise ValueError(f"{spec!r}: the window must end after it starts, on the same day")
    return dt.time(h1, m1), (MIDNIGHT if h2 == 24 else dt.time(h2, m2))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not a time zone; use an IANA name such as 'Europe/Berlin'") from exc


@lru_cache(maxsize=256)
def country_holidays(code: str) -> HolidaySet:
    """Public holidays for 'IN', 'US', or a subdivision such as 'US-CA' or 'DE-BY'."""
    country, _, subdiv = code.upper().partition("-")
    try:
        return holidays_lib.country_holidays(country, subdiv=subdiv or None)  # type: ignore[no-any-return]
    except NotImplementedError as exc:
        raise ValueError(
            f"{code!r} is not a supported holiday calendar; use an ISO country code such as 'IN', 'US' or 'US-CA'"
        ) from exc


class _NoHolidays:
    def __contains__(self, day: object) -> bool:
        return False


NO_HOLIDAYS: HolidaySet = _NoHolidays()


@dataclass(frozen=True)
class BusinessCalendar:
    """When sending is allowed for one recipient: their zone, the window, their holidays."""

    tz: ZoneInfo
    window: Window
    holidays: HolidaySet = NO_HOLIDAYS

    def is_business_day(self, day: dt.date) -> bool:
        return day.weekday() in self.window.days and day not in self.holidays

    def local(self, when: dt.datetime) -> dt.datetime:
        return when.astimezone(self.tz)

    def opens_at(self, day: dt.date) -> dt.datetime:
        """When the window opens on this local day (whether or not it is a business day)."""
        return self._at(day, self.window.start)

    def closes_at(self, day: dt.date) -> dt.datetime:
        """When the window opens on this local day closes: a window until 24:00 closes at the next day's midnight."""
        if self.window.until_midnight:
            return self._at(day + dt.timedelta(days=1), MIDNIGHT)
        return self._at(day, self.window.end)

    def _at(self, day: dt.date, time: dt.time) -> dt.datetime:
        return dt.datetime.combine(day, time, tzinfo=self.tz).astimezone(UTC)

    def is_open(self, when: dt.datetime) -> bool:
        local = self.local(when)
        return self.is_business_day(local.date()) and self.window.contains(local.time().replace(tzinfo=None))

    def next_open(self, when: dt.datetime) -> dt.datetime:
        """The earliest instant at or after `when` inside the window on a business day."""
        local = self.local(when)
        day = local.date()
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_business_day(day):
                start, end = self.opens_at(day), self.closes_at(day)
                if when < start:
                    return start
                if when < end:
                    return when
            day += dt.timedelta(days=1)
        raise NeverOpen(f"the window {self.window.describe()} never opens")

    def add_business_days(self, when: dt.datetime, days: int) -> dt.datetime:
        """`days` business days later, at the same local time of day (then into the window)."""
        local = self.local(when)
        day = local.date()
        remaining = days
        for _ in range(_MAX_SCAN_DAYS * 4):
            if remaining <= 0:
                break
            day += dt.timedelta(days=1)
            if self.is_business_day(day):
                remaining -= 1
        else:
            raise NeverOpen(f"the window {self.window.describe()} never opens")
        moved = dt.datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=self.tz)
        return self.next_open(moved.astimezone(UTC))

    def add_business_hours(self, when: dt.datetime, hours: float) -> dt.datetime:
        """Count `hours` of open window time from `when`."""
        remaining = dt.timedelta(hours=hours)
        current = self.next_open(when)
        for _ in range(_MAX_SCAN_DAYS * 4):
            end = self.closes_at(self.local(current).date())
            available = end - current
            if remaining < available:
                return current + remaining
            remaining -= available
            current = self.next_open(end)
        raise NeverOpen(f"the window {self.window.describe()} never opens")

    def after(self, when: dt.datetime, delay: Delay | None, rng: random.Random) -> dt.datetime:
        """The first sending instant once `delay` has passed since `when`."""
        if delay is None:
            return self.next_open(when)
        amount = delay.sample(rng)
        if delay.business and delay.unit is Unit.DAYS:
            return self.add_business_days(when, int(amount))
        if delay.business:
            return self.add_business_hours(when, amount)
        if delay.unit is Unit.MONTHS:
            return self.next_open(add_months(when.astimezone(self.tz), int(amount)).astimezone(UTC))
        seconds = amount * {Unit.MINUTES: 60, Unit.HOURS: 3600, Unit.DAYS: 86400, Unit.WEEKS: 604800}[delay.unit]
        if delay.unit in (Unit.DAYS, Unit.WEEKS):
            # Calendar days keep the local wall-clock time across a DST change.
            local = when.astimezone(self.tz).replace(tzinfo=None) + dt.timedelta(seconds=seconds)
            target = local.replace(tzinfo=self.tz).astimezone(UTC)
        else:
            target = when + dt.timedelta(seconds=seconds)
        return self.next_open(target)


def add_months(local: dt.datetime, months: int) -> dt.datetime:
    month_index = local.month - 1 + months
    year, month = local.year + month_index // 12, month_index % 12 + 1
    day = min(local.day, _days_in_month(year, month))
    return local.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day
