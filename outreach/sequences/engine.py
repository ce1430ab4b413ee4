"""The pure state machine: (state, definition, events, now, calendar) -> (state, actions).

No database, no network, no clock: time comes in as `now`, randomness from the enrollment's
seed (so a range such as "2-3 days" lands on the same point every time it is computed).
The caller stores the new state and carries out the actions, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Iterable, Sequence as Seq
from dataclasses import dataclass, replace

from outreach.sequences.calendar import BusinessCalendar
from outreach.sequences.delays import Delay
from outreach.sequences.schema import Sequence, Step


class Phase(enum.StrEnum):
    ACTIVE = "active"  # working through the steps
    WAITING = "waiting"  # a task step must be done before the next step
    PAUSED = "paused"  # until a date (out of office) or until resumed
    ESCALATED = "escalated"  # no answer after the last step; the manager was told
    DORMANT = "dormant"  # parked until the revisit date
    STOPPED = "stopped"  # ended early: reply, bounce, unsubscribe, unenrolled
    COMPLETED = "completed"  # ran its course


TERMINAL = frozenset({Phase.STOPPED, Phase.COMPLETED})


class CrmStatus(enum.StrEnum):
    NEW = "New"  # imported, never enrolled: nobody has been contacted (a lead's state before any sequence)
    ACTIVE = "Active"  # the lead answered: a conversation is open
    FOLLOW_UP = "Follow-Up"  # we are following up and waiting for an answer
    CLOSED = "Closed"  # nothing more will happen
    DORMANT = "Dormant"  # parked, to be revisited


@dataclass(frozen=True)
class State:
    phase: Phase
    anchor_at: dt.datetime  # when the last thing happened: enrollment, a step, escalation ...
    seed: int
    last_step: str | None = None
    cycle: int = 0
    cycle_started_at: dt.datetime | None = None
    thread: int = 0  # threads started so far; the current thread's number
    thread_cycle: int = 0
    paused_until: dt.datetime | None = None
    paused_at: dt.datetime | None = None  # when the pause began: the cycle's clock stops meanwhile
    resume_to: Phase | None = None
    waiting_for: str | None = None
    stop_reason: str | None = None
    # the step key of an email handed to the outbox and not yet out (sent, or finally failed or
    # cancelled): nothing further happens until it is, and the next wait counts from then
    sending: str | None = None

    @classmethod
    def start(cls, at: dt.datetime, seed: int) -> State:
        return cls(phase=Phase.ACTIVE, anchor_at=at, seed=seed)

    @property
    def crm_status(self) -> CrmStatus:
        if self.phase is Phase.DORMANT:
            return CrmStatus.DORMANT
        if self.phase is Phase.STOPPED:
            return CrmStatus.ACTIVE if self.stop_reason == "reply" else CrmStatus.CLOSED
        if self.phase is Phase.COMPLETED:
            return CrmStatus.CLOSED
        return CrmStatus.FOLLOW_UP


# ---- events: what happened since the last decision -------------------------------------------


@dataclass(frozen=True)
class Event:
    at: dt.datetime


@dataclass(frozen=True)
class Replied(Event):
    pass


@dataclass(frozen=True)
class AutoReplied(Event):
    until: dt.datetime | None = None  # the return date the message states, if any


@dataclass(frozen=True)
class Bounced(Event):
    hard: bool = True


@dataclass(frozen=True)
class Refused(Event):
    """The lead's server refused a step's email for a reason about the sender (its server, domain or
    content), not about the address: nothing more goes to the lead until the owner closes `task_key`."""

    task_key: str


@dataclass(frozen=True)
class Unsubscribed(Event):
    pass


@dataclass(frozen=True)
class PauseRequested(Event):
    until: dt.datetime | None = None


@dataclass(frozen=True)
class ResumeRequested(Event):
    pass


@dataclass(frozen=True)
class Unenrolled(Event):
    reason: str = "unenrolled"


@dataclass(frozen=True)
class TaskFinished(Event):
    step_key: str
    skipped: bool = False


@dataclass(frozen=True)
class EmailDone(Event):
    """The outbox is done with a step's email: it went out at `at`, or was finally failed or cancelled then."""

    step_key: str
    sent: bool = True


# ---- actions: what the caller must do ---------------------------------------------------------


@dataclass(frozen=True)
class Action:
    at: dt.datetime


@dataclass(frozen=True)
class SendEmail(Action):
    step_key: str  # unique per enrollment: the outbox row's key
    step_id: str
    template: str
    subject: str | None
    thread: int
    new_thread: bool


@dataclass(frozen=True)
class CreateTask(Action):
    step_key: str
    step_id: str
    channel: str
    note: str
    title: str | None
    due_at: dt.datetime
    wait: bool


@dataclass(frozen=True)
class Escalate(Action):
    notify: str
    message_template: str | None
    message_from: str | None
    message_mode: str | None


@dataclass(frozen=True)
class GoDormant(Action):
    revisit_at: dt.datetime | None


@dataclass(frozen=True)
class Revisit(Action):
    then: str


@dataclass(frozen=True)
class Stop(Action):
    reason: str
    suppress: bool = False


@dataclass(frozen=True)
class NotifyOwner(Action):
    reason: str


@dataclass(frozen=True)
class Pause(Action):
    until: dt.datetime | None
    reason: str


@dataclass(frozen=True)
class Resume(Action):
    pass


@dataclass(frozen=True)
class Complete(Action):
    pass


@dataclass(frozen=True)
class Decision:
    state: State
    actions: tuple[Action, ...]
    next_action_at: dt.datetime | None


# ---- the machine ------------------------------------------------------------------------------


def _rng(state: State, key: str) -> random.Random:
    return random.Random(f"{state.seed}:{key}")


def step_key(step_id: str, cycle: int) -> str:
    return step_id if cycle == 0 else f"{step_id}@{cycle + 1}"


def _next_step(state: State, seq: Sequence) -> tuple[Step, int] | None:
    """The step to do next and the cycle it belongs to, or None when the steps are done."""
    if state.last_step is None:
        return seq.steps[0], state.cycle
    index = seq.index(state.last_step)
    if index is None:  # the step was removed from the definition; see migrate()
        index = len(seq.steps) - 1
    if index + 1 < len(seq.steps):
        return seq.steps[index + 1], state.cycle
    if seq.repeat and (seq.repeat.times is None or state.cycle + 1 < seq.repeat.times):
        return seq.steps[0], state.cycle + 1
    return None


def next_action_at(state: State, seq: Sequence, cal: BusinessCalendar) -> dt.datetime | None:
    """When the machine next has something to do on its own (None: only an event can move it)."""
    phase = state.phase
    if phase is Phase.ACTIVE and state.sending is not None:
        return None  # the email in flight moves it (EmailDone), whenever it goes out
    if phase is Phase.ACTIVE:
        upcoming = _next_step(state, seq)
        if upcoming is not None:
            step, cycle = upcoming
            key = step_key(step.id, cycle)
            if cycle != state.cycle and seq.repeat is not None:
                start = state.cycle_started_at or state.anchor_at
                return cal.after(start, seq.repeat.every, _rng(state, key))
            if step.at is not None:
                # counted from the cycle's first step, but never before the previous step
                start = state.cycle_started_at or state.anchor_at
                return max(cal.after(start, step.at, _rng(state, key)), cal.next_open(state.anchor_at))
            return cal.after(state.anchor_at, step.after, _rng(state, key))
        if seq.escalate:
            return cal.after(state.anchor_at, seq.escalate.after, _rng(state, "escalate"))
        if seq.dormant:
            return cal.after(state.anchor_at, seq.dormant.after, _rng(state, "dormant"))
        return state.anchor_at
    if phase is Phase.PAUSED:
        return state.paused_until
    if phase is Phase.ESCALATED:
        if seq.dormant:
            return cal.after(state.anchor_at, seq.dormant.after, _rng(state, "dormant"))
        return state.anchor_at
    if phase is Phase.DORMANT:
        if seq.dormant and seq.dormant.revisit:
            return _revisit_at(state, seq.dormant.revisit, cal)
        return None
    return None  # waiting for a task, stopped, completed


def _revisit_at(state: State, revisit: Delay, cal: BusinessCalendar) -> dt.datetime:
    return cal.after(state.anchor_at, revisit, _rng(state, "revisit"))


def _pause(state: State, until: dt.datetime | None, at: dt.datetime, reason: str) -> tuple[State, list[Action]]:
    if state.phase not in (Phase.ACTIVE, Phase.WAITING, Phase.ESCALATED, Phase.PAUSED):
        return state, []
    resume_to = state.resume_to if state.phase is Phase.PAUSED else state.phase
    if state.phase is Phase.PAUSED and state.paused_until is None and until is not None:
        until = None  # a manual pause without end outlasts an out-of-office date
    paused_at = state.paused_at if state.phase is Phase.PAUSED else at
    new = replace(state, phase=Phase.PAUSED, paused_until=until, paused_at=paused_at, resume_to=resume_to)
    return new, [Pause(at=at, until=until, reason=reason)]


def _stop(state: State, at: dt.datetime, reason: str, suppress: bool = False) -> tuple[State, list[Action]]:
    new = replace(state, phase=Phase.STOPPED, stop_reason=reason, paused_until=None, paused_at=None, waiting_for=None)
    return new, [Stop(at=at, reason=reason, suppress=suppress)]


def apply_event(state: State, seq: Sequence, event: Event, cal: BusinessCalendar) -> tuple[State, list[Action]]:
    """Fold one event into the state. Events after the end change nothing."""
    if state.phase in TERMINAL:
        return state, []
    at = event.at
    if isinstance(event, Replied):
        if seq.on_reply == "continue" and state.phase is not Phase.DORMANT:
            # Skip the rest of this cycle's steps; the next cycle goes on as planned.
            return replace(state, last_step=seq.steps[-1].id), [NotifyOwner(at=at, reason="reply")]
        new, actions = _stop(state, at, "reply")
        return new, [*actions, NotifyOwner(at=at, reason="reply")]
    if isinstance(event, AutoReplied):
        policy = seq.on_auto_reply
        if policy.action == "ignore" or state.phase is Phase.DORMANT:
            return state, []
        if policy.action == "stop":
            return _stop(state, at, "auto-reply")
        until = event.until if event.until and event.until > at else cal.after(at, policy.default, _rng(state, f"ooo:{at.isoformat()}"))
        return _pause(state, until, at, "auto-reply")
    if isinstance(event, Bounced):
        if not event.hard:
            return state, []
        return _stop(state, at, "bounce", suppress=seq.on_bounce == "suppress")
    if isinstance(event, Refused):
        return _hold_for(state, event.task_key), []
    if isinstance(event, Unsubscribed):
        return _stop(state, at, "unsubscribe", suppress=seq.on_unsubscribe == "suppress")
    if isinstance(event, PauseRequested):
        return _pause(state, event.until, at, "manual")
    if isinstance(event, ResumeRequested):
        if state.phase is not Phase.PAUSED:
            return state, []
        return _resume(state, at)
    if isinstance(event, Unenrolled):
        return _stop(state, at, event.reason)
    if isinstance(event, EmailDone):
        return _email_done(state, seq, event), []
    if isinstance(event, TaskFinished):
        if state.phase is Phase.WAITING and state.waiting_for == event.step_key:
            return replace(state, phase=Phase.ACTIVE, waiting_for=None, anchor_at=at), []
        if state.phase is Phase.PAUSED and state.resume_to is Phase.WAITING and state.waiting_for == event.step_key:
            return replace(state, resume_to=Phase.ACTIVE, waiting_for=None, anchor_at=at), []
        return state, []
    raise TypeError(f"unknown event {event!r}")


def _hold_for(state: State, task_key: str) -> State:
    """Wait for a task before the next step; a wait already there (a task step's) is left as it is."""
    if state.phase is Phase.ACTIVE:
        return replace(state, phase=Phase.WAITING, waiting_for=task_key)
    if state.phase is Phase.PAUSED and state.resume_to in (None, Phase.ACTIVE):
        return replace(state, resume_to=Phase.WAITING, waiting_for=task_key)
    return state


def _email_done(state: State, seq: Sequence, event: EmailDone) -> State:
    """The email in flight is out (or never will be): the next step's wait counts from now, and a
    cycle's `at:` steps from when its first step actually went out."""
    if state.sending != event.step_key:
        return state  # not the one awaited (told twice, or from before a change of version)
    new = replace(state, sending=None, anchor_at=event.at)
    if event.step_key.split("@")[0] == seq.steps[0].id:
        new = replace(new, cycle_started_at=_shifted_start(state, event.at))
    return new


def _shifted_start(state: State, at: dt.datetime) -> dt.datetime:
    """A cycle's start moved to when its first email went out, less any pause since (a pause moves
    `cycle_started_at` on when it ends)."""
    if state.phase is Phase.PAUSED and state.paused_at is not None and at > state.paused_at:
        return state.paused_at
    return at


def _resume(state: State, at: dt.datetime) -> tuple[State, list[Action]]:
    """Go on where the pause found it: steps counted from the cycle's start move by the pause's
    length, so what fell due while paused does not go out all at once."""
    shift = at - state.paused_at if state.paused_at is not None and at > state.paused_at else dt.timedelta(0)
    started = state.cycle_started_at + shift if state.cycle_started_at is not None else None
    new = replace(state, phase=state.resume_to or Phase.ACTIVE, paused_until=None, paused_at=None, resume_to=None, cycle_started_at=started)
    return new, [Resume(at=at)]


def _advance(state: State, seq: Sequence, now: dt.datetime, cal: BusinessCalendar) -> tuple[State, list[Action]]:
    """Do the one thing that is due."""
    if state.phase is Phase.PAUSED:
        return _resume(state, now)
    if state.phase is Phase.ACTIVE:
        upcoming = _next_step(state, seq)
        if upcoming is None:
            if seq.escalate:
                message = seq.escalate.message
                action: Action = Escalate(
                    at=now,
                    notify=seq.escalate.notify,
                    message_template=message.template if message else None,
                    message_from=message.sender if message else None,
                    message_mode=message.mode if message else None,
                )
                return replace(state, phase=Phase.ESCALATED, anchor_at=now), [action]
            if seq.dormant:
                return _go_dormant(state, seq, now, cal)
            return replace(state, phase=Phase.COMPLETED, anchor_at=now), [Complete(at=now)]
        step, cycle = upcoming
        key = step_key(step.id, cycle)
        new = replace(state, last_step=step.id, cycle=cycle, anchor_at=now)
        if cycle != state.cycle or state.cycle_started_at is None or step is seq.steps[0]:
            new = replace(new, cycle_started_at=now)
        if step.template is not None:
            new_thread = state.thread == 0 or step.thread == "new" or state.thread_cycle != cycle
            thread = state.thread + 1 if new_thread else state.thread
            new = replace(new, thread=thread, thread_cycle=cycle, sending=key)
            return new, [
                SendEmail(
                    at=now,
                    step_key=key,
                    step_id=step.id,
                    template=step.template,
                    subject=step.subject,
                    thread=thread,
                    new_thread=new_thread,
                )
            ]
        task = step.task
        assert task is not None
        due = cal.after(now, task.due, _rng(state, f"due:{key}")) if task.due else _end_of_day(now, cal)
        if task.wait:
            new = replace(new, phase=Phase.WAITING, waiting_for=key)
        return new, [
            CreateTask(
                at=now,
                step_key=key,
                step_id=step.id,
                channel=task.channel.value,
                note=task.note,
                title=task.title,
                due_at=due,
                wait=task.wait,
            )
        ]
    if state.phase is Phase.ESCALATED:
        if seq.dormant:
            return _go_dormant(state, seq, now, cal)
        return replace(state, phase=Phase.COMPLETED, anchor_at=now), [Complete(at=now)]
    if state.phase is Phase.DORMANT:
        then = (seq.dormant.then if seq.dormant else None) or seq.name
        return replace(state, phase=Phase.COMPLETED, anchor_at=now, stop_reason="revisit"), [Revisit(at=now, then=then)]
    return state, []


def _go_dormant(state: State, seq: Sequence, now: dt.datetime, cal: BusinessCalendar) -> tuple[State, list[Action]]:
    new = replace(state, phase=Phase.DORMANT, anchor_at=now)
    revisit = _revisit_at(new, seq.dormant.revisit, cal) if seq.dormant and seq.dormant.revisit else None
    return new, [GoDormant(at=now, revisit_at=revisit)]


def _end_of_day(now: dt.datetime, cal: BusinessCalendar) -> dt.datetime:
    return cal.closes_at(cal.local(cal.next_open(now)).date())


def _window_bound(state: State, seq: Sequence) -> bool:
    """Is the next thing a step or an escalation, which may only happen inside the window?"""
    return state.phase is Phase.ACTIVE and (_next_step(state, seq) is not None or seq.escalate is not None)


def decide(
    state: State,
    seq: Sequence,
    events: Iterable[Event],
    now: dt.datetime,
    cal: BusinessCalendar,
) -> Decision:
    """Fold in the events, then do everything that is due at `now`.

    Something overdue (after a pause, or a scheduler that was down) is done at `now` only if
    the window is open; otherwise `next_action_at` is the next opening.
    """
    actions: list[Action] = []
    for event in sorted(events, key=lambda e: e.at):
        state, done = apply_event(state, seq, event, cal)
        actions.extend(done)
    for _ in range(len(seq.steps) + 4):  # zero-delay steps may follow each other at once
        due = next_action_at(state, seq, cal)
        if due is None or due > now:
            break
        if _window_bound(state, seq) and not cal.is_open(now):
            break
        state, done = _advance(state, seq, now, cal)
        actions.extend(done)
        if not done:
            break
    upcoming = next_action_at(state, seq, cal)
    if upcoming is not None and upcoming < now and _window_bound(state, seq):
        upcoming = cal.next_open(now)
    return Decision(state=state, actions=tuple(actions), next_action_at=upcoming)


def plan(state: State, seq: Sequence, cal: BusinessCalendar, *, limit: int = 40) -> list[Action]:
    """What will happen if nobody answers: the actions in order, each at its planned time."""
    planned: list[Action] = []
    if state.sending is not None:  # the email in flight, as if it went out when it was handed over
        state = _email_done(state, seq, EmailDone(at=state.anchor_at, step_key=state.sending))
    pending = next_action_at(state, seq, cal)
    now = pending
    for _ in range(limit * 2):
        if pending is None or now is None or len(planned) >= limit:
            break
        now = max(pending, now)
        decision = decide(state, seq, (), now, cal)
        planned.extend(decision.actions)
        after, pending = decision.state, decision.next_action_at
        if after.sending is not None:  # as if each email went out when it was planned
            after = _email_done(after, seq, EmailDone(at=now, step_key=after.sending))
            pending = next_action_at(after, seq, cal)
        if after == state and (pending is None or pending <= now):
            break
        state = after
    return planned[:limit]


def migrate(state: State, old: Sequence, new: Sequence) -> State:
    """Carry an enrollment onto a new version of its sequence, by step id.

    Steps already done are never done again. If the last step done still exists, the
    enrollment continues after it. If it was removed, it continues with the first of the old
    version's later steps that the new version still has; if none, it is past the steps.
    """
    waiting = state.waiting_for
    if waiting is not None and new.index(waiting.split("@")[0]) is None:
        state = replace(state, waiting_for=None, phase=Phase.ACTIVE if state.phase is Phase.WAITING else state.phase)
        if state.resume_to is Phase.WAITING:
            state = replace(state, resume_to=Phase.ACTIVE)
    if state.last_step is None or new.index(state.last_step) is not None:
        return state
    old_index = old.index(state.last_step)
    later: Seq[Step] = old.steps[old_index + 1 :] if old_index is not None else []
    for step in later:
        position = new.index(step.id)
        if position is not None:
            return replace(state, last_step=new.steps[position - 1].id if position > 0 else None)
    return replace(state, last_step=new.steps[-1].id)
