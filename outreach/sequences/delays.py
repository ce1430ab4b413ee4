"""Delays as managers write them: "3 days", "2-3 days", "4 business hours", "every 1 month".

A wait lies between SHORTEST and LONGEST, so that no plan runs past the calendar's end and no
step is due again and again at the same instant.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import re
from dataclasses import dataclass
from decimal import Decimal


class Unit(enum.StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"


_UNITS = {
    "minute": Unit.MINUTES, "minutes": Unit.MINUTES, "min": Unit.MINUTES, "mins": Unit.MINUTES,
    "hour": Unit.HOURS, "hours": Unit.HOURS, "h": Unit.HOURS,
    "day": Unit.DAYS, "days": Unit.DAYS, "d": Unit.DAYS,
    "week": Unit.WEEKS, "weeks": Unit.WEEKS, "w": Unit.WEEKS,
    "month": Unit.MONTHS, "months": Unit.MONTHS,
}  # fmt: skip

_PATTERN = re.compile(
    r"""^\s*(?:every\s+)?
        (?P<low>\d+(?:\.\d+)?)
        (?:\s*(?:-|–|to)\s*(?P<high>\d+(?:\.\d+)?))?
        \s*(?P<business>business\s+)?
        (?P<unit>[a-z]+)\s*$""",
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
_NUMBER = re.compile(r"^\s*\d{1,12}\s*$", re.ASCII)

EXAMPLES = "'3 days', '2-3 days', '4 business hours', '2 business days', '1 month'"

SHORTEST = dt.timedelta(seconds=30)  # "0.5 minutes" plays a sequence through quickly on trial; less is no wait at all
LONGEST = dt.timedelta(days=5 * 365.25)  # five years
SHORTEST_TEXT = "0.5 minutes"
LONGEST_TEXT = "5 years"

_SECONDS = {Unit.MINUTES: 60.0, Unit.HOURS: 3600.0, Unit.DAYS: 86400.0, Unit.WEEKS: 604800.0, Unit.MONTHS: 365.25 * 86400 / 12}  # a month: the average one


@dataclass(frozen=True)
class OpenWeek:
    """How much of a week a sending window is open: business time stretches by as much."""

    days: int = 7
    hours: float = 24.0  # open hours a day


ALWAYS_OPEN = OpenWeek()


@dataclass(frozen=True)
class Delay:
    """A wait; a range (low < high) is sampled once per enrollment and step."""

    low: float
    high: float
    unit: Unit
    business: bool = False

    @classmethod
    def parse(cls, text: object, *, bounded: bool = True) -> Delay:
        """Read a delay; with bounded=False (definitions stored before the bounds) only its form is checked."""
        if isinstance(text, Delay):
            return text
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise ValueError(f"{text!r} is not a delay; expected text like {EXAMPLES}")
        if isinstance(text, int):
            number = str(text) if abs(text) < 10**12 else "this number"
            raise ValueError(f"{number} has no unit; write e.g. '3 days'")  # noqa: TRY004 (pydantic locates a ValueError)
        if _NUMBER.match(text):
            raise ValueError(f"{_show(text)} has no unit; write e.g. '{int(text)} days'")
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(f"{_show(text)} is not a delay; expected text like {EXAMPLES}")
        unit = _UNITS.get(match["unit"].lower())
        if unit is None:
            raise ValueError(
                f"{_show(text)}: unknown unit {_show(match['unit'])}; use minutes, hours, days, weeks or months"
            )
        low = float(match["low"])
        high = float(match["high"]) if match["high"] else low
        if high < low:
            raise ValueError(f"{_show(text)}: the range goes backwards; write the smaller number first")
        if not math.isfinite(high):
            raise ValueError(f"{_show(text)} is longer than the longest wait, {LONGEST_TEXT}")
        business = bool(match["business"])
        if business and unit not in (Unit.HOURS, Unit.DAYS):
            raise ValueError(f"{_show(text)}: only hours and days can be business time")
        whole = low.is_integer() and high.is_integer()
        if business and unit is Unit.DAYS and not whole:
            raise ValueError(f"{_show(text)}: business days are whole days")
        if unit is Unit.MONTHS and not whole:
            raise ValueError(f"{_show(text)}: months are whole months")
        delay = cls(low=low, high=high, unit=unit, business=business)
        if bounded:
            delay._check_bounds(text)
        return delay

    def _check_bounds(self, text: str) -> None:
        if self._seconds(self.low) < SHORTEST.total_seconds():
            starts = "starts below" if self.is_range else "is shorter than"
            raise ValueError(f"{_show(text)} {starts} the shortest wait, {SHORTEST_TEXT}")
        if self._seconds(self.high) > LONGEST.total_seconds():
            most = math.floor(LONGEST.total_seconds() / self._seconds(1))
            raise ValueError(f"{_show(text)} is longer than the longest wait, {LONGEST_TEXT} ({most} {'business ' if self.business else ''}{self.unit.value})")

    def _seconds(self, amount: float, week: OpenWeek = ALWAYS_OPEN) -> float:
        stretch = 1.0
        if self.business:
            stretch = 7 / week.days if self.unit is Unit.DAYS else 168 / (week.days * week.hours)
        return amount * _SECONDS[self.unit] * stretch

    def shortest(self, week: OpenWeek = ALWAYS_OPEN) -> dt.timedelta:
        """About the least time the wait takes (business time in a window open `week`: at least itself)."""
        return _timedelta(self._seconds(self.low, week))

    def longest(self, week: OpenWeek = ALWAYS_OPEN) -> dt.timedelta:
        """About the most time the wait takes (an average month; business time in a window open `week`)."""
        return _timedelta(self._seconds(self.high, week))

    @property
    def is_range(self) -> bool:
        return self.high > self.low

    def sample(self, rng: random.Random) -> float:
        """A point in the range: whole numbers for business days and months."""
        if not self.is_range:
            return self.low
        if self.unit is Unit.MONTHS or (self.business and self.unit is Unit.DAYS):
            return float(rng.randint(int(self.low), int(self.high)))
        return rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        amount = _num(self.low) if not self.is_range else f"{_num(self.low)}-{_num(self.high)}"
        unit = self.unit.value[:-1] if not self.is_range and self.low == 1 else self.unit.value
        return f"{amount} {'business ' if self.business else ''}{unit}"


def _show(text: str) -> str:
    """The text as written, shortened when it is long (it is quoted back in an error)."""
    return repr(text if len(text) <= 60 else f"{text[:30]}...{text[-20:]}")


def _timedelta(seconds: float) -> dt.timedelta:
    """dt.timedelta.max stands for anything longer (a stored definition from before the bounds)."""
    return dt.timedelta(seconds=seconds) if seconds < dt.timedelta.max.total_seconds() / 2 else dt.timedelta.max


def _num(value: float) -> str:
    """Plain decimal digits (never '1e-07'), which parse back to the same number."""
    if not math.isfinite(value):
        return str(value)
    return str(int(value)) if value == int(value) else format(Decimal(repr(value)), "f")
