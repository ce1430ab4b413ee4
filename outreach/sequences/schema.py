"""The sequence file format, validated with pydantic; see the README's YAML reference."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from outreach.mail.bounce_reasons import Effect, Reason, effect_of
from outreach.sequences.calendar import Window, country_holidays, parse_days, parse_hours, zone
from outreach.sequences.delays import LONGEST, LONGEST_TEXT, Delay, OpenWeek

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
Loc = tuple[str | int, ...]  # a place in a sequence file, as pydantic names it: ("steps", 1, "after")


STORED = "stored"  # set in the validation context for a definition read back from the database


def _bounded(info: ValidationInfo) -> bool:
    """Files are held to the bounds; a stored definition loads as it was stored, even from before them."""
    return not (isinstance(info.context, dict) and info.context.get(STORED))


def _delay(value: Any, info: ValidationInfo) -> Delay:
    return Delay.parse(value, bounded=_bounded(info))


DelayField = Annotated[Delay, BeforeValidator(_delay), PlainSerializer(str, return_type=str)]


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise ValueError(
            f"{value!r} is not a valid id; use lower-case letters, digits, '-' and '_' (e.g. 'proposal-check')"
        )
    return value


Slug = Annotated[str, BeforeValidator(_slug)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(enum.StrEnum):
    PHONE = "phone"
    LINKEDIN = "linkedin"
    TEAMS = "teams"
    WHATSAPP = "whatsapp"
    MEETING = "meeting"
    CUSTOM = "custom"


class TaskSpec(Strict):
    """A manual step done by a person (call, LinkedIn message ...)."""

    channel: Channel
    note: str = Field(min_length=1)
    title: str | None = None
    due: DelayField | None = None  # how long the person has; default: the same business day
    wait: bool = False  # true: the next step waits until the task is done or skipped


class Step(Strict):
    id: Slug
    after: DelayField | None = None  # counted from the previous step
    at: DelayField | None = None  # counted from the first step of the cycle ("day 5"), so shifts do not add up
    template: str | None = None
    subject: str | None = None
    thread: Literal["same", "new"] = "same"
    task: TaskSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.template is None) == (self.task is None):
            raise ValueError("a step has either 'template' (an email) or 'task' (a manual step), not both or neither")
        if self.task is not None and self.subject is not None:
            raise ValueError("'subject' belongs to email steps; a task has 'title'")
        if self.subject is not None and ("\n" in self.subject or "\r" in self.subject):
            raise ValueError("'subject' must be one line")
        if self.after is not None and self.at is not None:
            raise ValueError("a step has 'after' (from the previous step) or 'at' (from the first step), not both")
        return self

    @property
    def kind(self) -> str:
        return "email" if self.template else "task"


class WindowSpec(Strict):
    days: str | list[str] = "mon-fri"
    hours: str = "09:00-17:00"

    @field_validator("days")
    @classmethod
    def _days(cls, value: str | list[str]) -> str | list[str]:
        parse_days(value)
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    def build(self) -> Window:
        return _window(self.days if isinstance(self.days, str) else tuple(self.days), self.hours)


@lru_cache(maxsize=256)
def _window(days: str | tuple[str, ...], hours: str) -> Window:
    """Windows are parsed once: a calendar is built for every answer and every step."""
    return Window.parse(days, hours)


class AutoReplyPolicy(Strict):
    action: Literal["pause", "ignore", "stop"] = "pause"
    default: DelayField = Field(default_factory=lambda: Delay.parse("5 days"))  # when no return date is stated

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"action": value} if isinstance(value, str) else value


class Repeat(Strict):
    every: DelayField
    times: int | None = Field(default=None, ge=1)  # how many cycles in all; none: until stopped

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"every": value} if isinstance(value, str) else value


class ManagerMessage(Strict):
    template: str
    sender: Literal["manager", "owner"] = Field("manager", alias="from")
    mode: Literal["draft", "send"] = "draft"


class Escalate(Strict):
    after: DelayField
    notify: str = "manager"  # manager | owner | an address
    message: ManagerMessage | None = None

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str) -> str:
        if value not in ("manager", "owner") and "@" not in value:
            raise ValueError(f"{value!r}: notify 'manager', 'owner' or an email address")
        return value


class Dormant(Strict):
    after: DelayField
    revisit: DelayField | None = None
    then: Slug | None = None  # the sequence to enroll the lead in at the revisit

    @model_validator(mode="after")
    def _then_needs_revisit(self) -> Dormant:
        if self.then is not None and self.revisit is None:
            raise ValueError("'then' needs 'revisit' (when to enroll the lead again), e.g. revisit: 30-45 days")
        return self


class Sequence(Strict):
    name: Slug
    description: str = ""
    mailbox: str | list[str] = "owner"
    timezone: str = "lead"
    window: WindowSpec = Field(default_factory=WindowSpec)
    holidays: str | None = None  # a country ('IN', 'US-CA'), 'lead' (the lead's country) or none
    on_reply: Literal["stop", "continue"] = "stop"
    on_auto_reply: AutoReplyPolicy = Field(default_factory=AutoReplyPolicy)
    on_bounce: Literal["suppress", "stop"] = "suppress"
    on_bounce_reason: dict[Reason, Effect] = Field(default_factory=dict)  # per bounce reason: suppress | soft | task; else the defaults
    on_unsubscribe: Literal["suppress", "stop"] = "suppress"
    reply_sla: DelayField = Field(default_factory=lambda: Delay.parse("1 business day"))  # answer a reply within this, or it escalates
    on_negative_reply: Literal["escalate", "none"] = "none"  # feedback sequences: a negative answer goes to the manager at once
    negative_within: DelayField = Field(default_factory=lambda: Delay.parse("1 business day"))  # ... to be taken up within this
    steps: list[Step] = Field(min_length=1)
    repeat: Repeat | None = None
    escalate: Escalate | None = None
    dormant: Dormant | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if value != "lead":
            zone(value)
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str | None) -> str | None:
        if value is not None and value != "lead":
            country_holidays(value)
        return value

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, value: str | list[str]) -> str | list[str]:
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ValueError("name 'owner', a mailbox address, or a list of addresses for rotation")
        for item in values:
            if item != "owner" and "@" not in item:
                raise ValueError(f"{item!r}: use 'owner' or a mailbox address from outreach.yaml")
        if isinstance(value, list) and "owner" in value:
            raise ValueError("'owner' cannot be part of a pool; list mailbox addresses")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Sequence:
        if self.steps[0].at is not None:
            raise ValueError(f"the first step {self.steps[0].id!r} cannot have 'at': it is the start 'at' counts from; use 'after'")
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice; step ids must be unique")
            seen.add(step.id)
        if self.repeat and (self.escalate or self.dormant):
            raise ValueError("a repeating sequence never ends, so it cannot 'escalate' or go 'dormant'")
        if self.on_reply == "continue" and not self.repeat:
            raise ValueError("on_reply: continue only makes sense with 'repeat'; use on_reply: stop")
        return self

    @property
    def pools(self) -> list[str]:
        return [self.mailbox] if isinstance(self.mailbox, str) else list(self.mailbox)

    def bounce_effect(self, reason: Reason, *, permanent: bool) -> Effect:
        """What a bounce for this reason does to the lead, as this sequence says or by default."""
        return self.on_bounce_reason.get(reason) or effect_of(reason, permanent=permanent)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int | None:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        return None

    def delays(self) -> list[tuple[Loc, Delay]]:
        """Every wait of this sequence, with where it is written."""
        found: list[tuple[Loc, Delay | None]] = [
            (("reply_sla",), self.reply_sla),
            (("negative_within",), self.negative_within),
            (("on_auto_reply", "default"), self.on_auto_reply.default),
        ]
        for i, step in enumerate(self.steps):
            found += [(("steps", i, "after"), step.after), (("steps", i, "at"), step.at), (("steps", i, "task", "due"), step.task.due if step.task else None)]
        if self.repeat:
            found.append((("repeat", "every"), self.repeat.every))
        if self.escalate:
            found.append((("escalate", "after"), self.escalate.after))
        if self.dormant:
            found += [(("dormant", "after"), self.dormant.after), (("dormant", "revisit"), self.dormant.revisit)]
        return [(loc, delay) for loc, delay in found if delay is not None]

    def templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every template this sequence names, with where it is named."""
        found: list[tuple[tuple[str | int, ...], str]] = [
            (("steps", i, "template"), step.template) for i, step in enumerate(self.steps) if step.template
        ]
        if self.escalate and self.escalate.message:
            found.append((("escalate", "message", "template"), self.escalate.message.template))
        return found


def out_of_bounds(seq: Sequence) -> list[tuple[Loc, str]]:
    """Waits that the sequence's window stretches past LONGEST, and a repeat shorter than its round."""
    window = seq.window.build()
    week = window.open_week()
    found: list[tuple[Loc, str]] = []
    for loc, delay in seq.delays():
        if delay.business and delay.longest(week) > LONGEST:
            found.append((loc, f"{delay} in the window {window.describe()} takes up to {_about(delay.longest(week))}, longer than the longest wait, {LONGEST_TEXT}; shorten it or widen the window"))
    if found:
        return found  # a round with one of these in it is too long as well
    span = round_length(seq.steps, week)
    if span > LONGEST:
        found.append((("steps",), f"the steps take more than {LONGEST_TEXT} from the first to the last; shorten the waits"))
    elif seq.repeat and seq.repeat.every.shortest(week) < span:
        found.append((("repeat",), f"every {seq.repeat.every} is shorter than one round of the steps (up to {_about(span)}); repeat every {_about(span)} or more"))
    return found


def round_length(steps: list[Step], week: OpenWeek) -> dt.timedelta:
    """About the most one round of the steps takes, from the first to the last (tasks done at once).

    Stops counting past LONGEST.
    """
    span = dt.timedelta(0)
    for step in steps[1:]:
        if step.at is not None:
            span = max(span, step.at.longest(week))
        elif step.after is not None:
            span += step.after.longest(week)
        if span > LONGEST:
            break
    return span


def _about(span: dt.timedelta) -> str:
    """A length in whole days, hours or minutes, rounded up."""
    seconds = span.total_seconds()
    name, size = next(((n, z) for n, z in (("day", 86400), ("hour", 3600)) if seconds >= z), ("minute", 60))
    count = math.ceil(seconds / size)
    return f"{count} {name}{'' if count == 1 else 's'}"


def vocabulary() -> frozenset[str]:
    """Every field name in the format, for 'did you mean' hints."""
    names: set[str] = set()
    for model in (Sequence, Step, TaskSpec, WindowSpec, AutoReplyPolicy, Repeat, ManagerMessage, Escalate, Dormant):
        names.update(model.model_fields)
        names.update(f.alias for f in model.model_fields.values() if f.alias)
    return frozenset(names)
