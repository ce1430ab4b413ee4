"""Delays as managers write them: "3 days", "2-3 days", "4 business hours", "every 1 month"."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass


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
    re.VERBOSE | re.IGNORECASE,
)

EXAMPLES = "'3 days', '2-3 days', '4 business hours', '2 business days', '1 month'"


@dataclass(frozen=True)
class Delay:
    """A wait; a range (low < high) is sampled once per enrollment and step."""

    low: float
    high: float
    unit: Unit
    business: bool = False

    @classmethod
    def parse(cls, text: object) -> Delay:
        if isinstance(text, Delay):
            return text
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise ValueError(f"{text!r} is not a delay; expected text like {EXAMPLES}")
        if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
            raise ValueError(f"{text!r} has no unit; write e.g. '{int(text)} days'")
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a delay; expected text like {EXAMPLES}")
        unit = _UNITS.get(match["unit"].lower())
        if unit is None:
            raise ValueError(
                f"{text!r}: unknown unit {match['unit']!r}; use minutes, hours, days, weeks or months"
            )
        low = float(match["low"])
        high = float(match["high"]) if match["high"] else low
        if high < low:
            raise ValueError(f"{text!r}: the range goes backwards; write the smaller number first")
        business = bool(match["business"])
        if business and unit not in (Unit.HOURS, Unit.DAYS):
            raise ValueError(f"{text!r}: only hours and days can be business time")
        if business and unit is Unit.DAYS and (low != int(low) or high != int(high)):
            raise ValueError(f"{text!r}: business days are whole days")
        if unit is Unit.MONTHS and (low != int(low) or high != int(high)):
            raise ValueError(f"{text!r}: months are whole months")
        return cls(low=low, high=high, unit=unit, business=business)

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


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
