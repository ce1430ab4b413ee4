from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.sequences import engine as eng
from outreach.sequences.calendar import BusinessCalendar, Window, country_holidays
from outreach.sequences.schema import Sequence

UTC = dt.timezone.utc
IST = ZoneInfo("Asia/Kolkata")

BD: dict[str, Any] = {
    "name": "bd",
    "window": {"days": "mon-fri", "hours": "09:00-17:30"},
    "holidays": "IN",
    "steps": [
        {"id": "intro", "template": "initial_outreach"},
        {"id": "proposal-check", "after": "2-3 days", "template": "proposal_follow_up"},
        {"id": "reminder", "after": "2 days", "template": "polite_reminder"},
        {"id": "call", "after": "5 days", "task": {"channel": "phone", "note": "Call {{ lead.first_name }}"}},
        {"id": "closure", "after": "4 days", "template": "closure"},
    ],
    "escalate": {"after": "2 business days", "notify": "manager", "message": {"from": "manager", "template": "manager_reengage", "mode": "draft"}},
    "dormant": {"after": "7 days", "revisit": "30-45 days", "then": "re-engagement"},
}
BD_AT: dict[str, Any] = {
    **BD,
    "steps": [
        {"id": "intro", "template": "initial_outreach"},
        {"id": "proposal-check", "at": "2-3 days", "template": "proposal_follow_up"},
        {"id": "reminder", "at": "5 days", "template": "polite_reminder"},
        {"id": "call", "at": "10 days", "task": {"channel": "phone", "note": "Call"}},
        {"id": "closure", "at": "14 days", "template": "closure"},
    ],
}
CHECK_IN: dict[str, Any] = {
    "name": "check-in",
    "on_reply": "continue",
    "repeat": {"every": "1 month", "times": 4},
    "steps": [{"id": "check-in", "template": "check_in"}, {"id": "nudge", "after": "3 business days", "template": "nudge"}],
}


def seq(data: dict[str, Any], **changes: Any) -> Sequence:
    return Sequence.model_validate({**data, **changes})


def cal(tz: ZoneInfo = IST, country: str | None = "IN") -> BusinessCalendar:
    window = Window.parse("mon-fri", "09:00-17:30")
    return BusinessCalendar(tz, window, country_holidays(country)) if country else BusinessCalendar(tz, window)


MONDAY_10_IST = dt.datetime(2026, 11, 23, 10, 0, tzinfo=IST).astimezone(UTC)


def test_the_bd_procedure_plans_intro_follow_ups_call_closure_escalation_dormancy_and_revisit() -> None:
    actions = eng.plan(eng.State.start(MONDAY_10_IST, seed=42), seq(BD), cal())
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["SendEmail", "SendEmail", "SendEmail", "CreateTask", "SendEmail", "Escalate", "GoDormant", "Revisit"]
    intro, check, reminder, call, closure, escalate, dormant, revisit = actions
    assert intro.at == MONDAY_10_IST  # within 24 h of the hand-over: at once, the window being open
    assert dt.timedelta(days=2) <= check.at - intro.at <= dt.timedelta(days=5)  # 2-3 days, then the window
    assert all(isinstance(a, eng.SendEmail) and a.thread == 1 for a in (intro, check, reminder, closure))
    assert [a.new_thread for a in (intro, check, reminder, closure)] == [True, False, False, False]  # type: ignore[attr-defined]
    assert isinstance(call, eng.CreateTask) and call.channel == "phone"
    assert isinstance(escalate, eng.Escalate) and escalate.message_mode == "draft"
    assert isinstance(dormant, eng.GoDormant) and dormant.revisit_at == revisit.at
    assert dt.timedelta(days=30) <= revisit.at - dormant.at <= dt.timedelta(days=48)
    assert isinstance(revisit, eng.Revisit) and revisit.then == "re-engagement"


@pytest.mark.parametrize("day", range(7))
def test_at_counts_from_the_first_step_so_weekend_shifts_do_not_add_up(day: int) -> None:
    start = MONDAY_10_IST + dt.timedelta(days=day)
    actions = eng.plan(eng.State.start(start, seed=day), seq(BD_AT), cal(country=None))
    intro, check, reminder, call, closure = actions[:5]
    since = [(a.at.astimezone(IST).date() - intro.at.astimezone(IST).date()).days for a in (check, reminder, call, closure)]
    # each lands on its day, or on the next business day when that day is a weekend
    assert 2 <= since[0] <= 5 and 5 <= since[1] <= 7 and 10 <= since[2] <= 12 and 14 <= since[3] <= 16, since
    assert [a.at for a in actions[:5]] == sorted(a.at for a in actions[:5])


def test_a_step_with_at_never_comes_before_the_previous_one() -> None:
    data = {**BD_AT, "steps": [{"id": "a", "template": "t"}, {"id": "b", "after": "20 days", "template": "t"}, {"id": "c", "at": "5 days", "template": "t"}]}
    a, b, c = [x for x in eng.plan(eng.State.start(MONDAY_10_IST, 1), seq(data), cal()) if isinstance(x, eng.SendEmail)]
    assert c.at >= b.at


def test_the_same_seed_plans_the_same_points_in_ranges() -> None:
    a = eng.plan(eng.State.start(MONDAY_10_IST, seed=5), seq(BD), cal())
    b = eng.plan(eng.State.start(MONDAY_10_IST, seed=5), seq(BD), cal())
    c = eng.plan(eng.State.start(MONDAY_10_IST, seed=6), seq(BD), cal())
    assert a == b
    assert [x.at for x in a] != [x.at for x in c]


def test_a_reply_stops_everything_and_tells_the_owner() -> None:
    state = eng.State.start(MONDAY_10_IST, seed=1)
    first = eng.decide(state, seq(BD), (), MONDAY_10_IST, cal())
    assert [type(a) for a in first.actions] == [eng.SendEmail]
    replied = eng.decide(first.state, seq(BD), [eng.Replied(at=MONDAY_10_IST + dt.timedelta(hours=3))], MONDAY_10_IST + dt.timedelta(hours=3), cal())
    assert replied.state.phase is eng.Phase.STOPPED
    assert replied.state.crm_status is eng.CrmStatus.ACTIVE
    assert replied.next_action_at is None
    assert {type(a) for a in replied.actions} == {eng.Stop, eng.NotifyOwner}
    assert eng.plan(replied.state, seq(BD), cal()) == []


def test_a_reply_while_dormant_ends_the_revisit() -> None:
    state = eng.State(phase=eng.Phase.DORMANT, anchor_at=MONDAY_10_IST, seed=3, last_step="closure")
    decision = eng.decide(state, seq(BD), [eng.Replied(at=MONDAY_10_IST)], MONDAY_10_IST + dt.timedelta(days=90), cal())
    assert decision.state.phase is eng.Phase.STOPPED
    assert not any(isinstance(a, eng.Revisit) for a in decision.actions)


def out(decision: eng.Decision, at: dt.datetime, definition: Sequence) -> eng.State:
    """The state once the email the decision handed to the outbox went out at `at`."""
    state = decision.state
    assert state.sending is not None
    return eng.apply_event(state, definition, eng.EmailDone(at=at, step_key=state.sending), cal())[0]


def test_out_of_office_pauses_until_the_stated_return_date_then_goes_on() -> None:
    state = out(eng.decide(eng.State.start(MONDAY_10_IST, 1), seq(BD), (), MONDAY_10_IST, cal()), MONDAY_10_IST, seq(BD))
    back = dt.datetime(2026, 12, 14, 0, 0, tzinfo=UTC)
    paused = eng.decide(state, seq(BD), [eng.AutoReplied(at=MONDAY_10_IST + dt.timedelta(hours=1), until=back)], MONDAY_10_IST + dt.timedelta(hours=1), cal())
    assert paused.state.phase is eng.Phase.PAUSED
    assert paused.next_action_at == back
    assert paused.state.crm_status is eng.CrmStatus.FOLLOW_UP  # an auto-reply is not an answer
    resumed = eng.decide(paused.state, seq(BD), (), back, cal())
    assert resumed.state.phase is eng.Phase.ACTIVE
    nxt = resumed.next_action_at
    assert nxt is not None and nxt >= back


def test_steps_that_fell_due_during_a_pause_keep_their_gaps_after_it() -> None:
    definition = seq(BD_AT)
    state = eng.decide(eng.State.start(MONDAY_10_IST, 1), definition, (), MONDAY_10_IST, cal()).state  # the intro
    away = MONDAY_10_IST + dt.timedelta(hours=2)
    back = MONDAY_10_IST + dt.timedelta(days=21)  # every later step fell due meanwhile
    paused = eng.decide(state, definition, [eng.AutoReplied(at=away, until=back)], away, cal()).state
    emails = [a for a in eng.plan(paused, definition, cal()) if isinstance(a, (eng.SendEmail, eng.CreateTask))]
    assert emails[0].at >= back
    gaps = [b.at - a.at for a, b in zip(emails, emails[1:])]
    assert all(gap >= dt.timedelta(days=1) for gap in gaps), gaps


def test_out_of_office_without_a_date_pauses_for_the_sequence_default() -> None:
    definition = seq(BD, on_auto_reply={"action": "pause", "default": "3 days"})
    state = eng.decide(eng.State.start(MONDAY_10_IST, 1), definition, (), MONDAY_10_IST, cal()).state
    at = MONDAY_10_IST + dt.timedelta(hours=1)
    paused = eng.decide(state, definition, [eng.AutoReplied(at=at)], at, cal())
    assert paused.next_action_at is not None
    assert dt.timedelta(days=3) <= paused.next_action_at - at < dt.timedelta(days=4)


def test_hard_bounce_suppresses_soft_bounce_does_not_stop() -> None:
    state = eng.State.start(MONDAY_10_IST, 1)
    soft = eng.decide(state, seq(BD), [eng.Bounced(at=MONDAY_10_IST, hard=False)], MONDAY_10_IST, cal())
    assert soft.state.phase is eng.Phase.ACTIVE
    hard = eng.decide(state, seq(BD), [eng.Bounced(at=MONDAY_10_IST, hard=True)], MONDAY_10_IST, cal())
    assert hard.state.phase is eng.Phase.STOPPED
    assert eng.Stop(at=MONDAY_10_IST, reason="bounce", suppress=True) in hard.actions
    assert hard.state.crm_status is eng.CrmStatus.CLOSED


def test_recurring_check_ins_start_a_new_thread_each_cycle_and_a_reply_only_ends_the_cycle() -> None:
    definition = seq(CHECK_IN)
    actions = eng.plan(eng.State.start(MONDAY_10_IST, 9), definition, cal(country=None))
    emails = [a for a in actions if isinstance(a, eng.SendEmail)]
    assert [a.step_key for a in emails] == ["check-in", "nudge", "check-in@2", "nudge@2", "check-in@3", "nudge@3", "check-in@4", "nudge@4"]
    assert [a.thread for a in emails] == [1, 1, 2, 2, 3, 3, 4, 4]
    starts = [a.at for a in emails if a.step_id == "check-in"]
    assert all(dt.timedelta(days=28) <= b - a <= dt.timedelta(days=34) for a, b in zip(starts, starts[1:]))
    assert isinstance(actions[-1], eng.Complete)
    # a reply to the first check-in skips its nudge; the next month's check-in still comes
    first = eng.decide(eng.State.start(MONDAY_10_IST, 9), definition, (), MONDAY_10_IST, cal(country=None))
    replied = eng.decide(first.state, definition, [eng.Replied(at=MONDAY_10_IST), eng.EmailDone(at=MONDAY_10_IST, step_key="check-in")], MONDAY_10_IST, cal(country=None))
    rest = [a for a in eng.plan(replied.state, definition, cal(country=None)) if isinstance(a, eng.SendEmail)]
    assert rest[0].step_key == "check-in@2"


def test_a_task_that_waits_holds_the_sequence_until_done() -> None:
    data = {**BD, "steps": [{"id": "intro", "template": "t"}, {"id": "call", "after": "1 day", "task": {"channel": "phone", "note": "n", "wait": True}}, {"id": "after-call", "after": "1 day", "template": "t2"}]}
    definition = seq(data)
    state = eng.State.start(MONDAY_10_IST, 1)
    for _ in range(2):
        at = eng.next_action_at(state, definition, cal()) or MONDAY_10_IST
        decision = eng.decide(state, definition, (), at, cal())
        state = out(decision, at, definition) if decision.state.sending else decision.state
    assert state.phase is eng.Phase.WAITING and decision.next_action_at is None
    done_at = MONDAY_10_IST + dt.timedelta(days=4)
    after = eng.decide(state, definition, [eng.TaskFinished(at=done_at, step_key="call")], done_at, cal())
    assert after.state.phase is eng.Phase.ACTIVE
    assert after.next_action_at is not None and after.next_action_at >= done_at + dt.timedelta(days=1)


def test_migration_continues_by_step_id() -> None:
    old = seq(BD)
    new_steps = [s for s in BD["steps"] if s["id"] != "reminder"]
    new = seq(BD, steps=new_steps)
    state = eng.State(phase=eng.Phase.ACTIVE, anchor_at=MONDAY_10_IST, seed=1, last_step="reminder", thread=1)
    moved = eng.migrate(state, old, new)
    assert eng._next_step(moved, new)[0].id == "call"  # type: ignore[index]
    kept = eng.migrate(eng.State(phase=eng.Phase.ACTIVE, anchor_at=MONDAY_10_IST, seed=1, last_step="intro"), old, new)
    assert kept.last_step == "intro"
    gone = eng.migrate(eng.State(phase=eng.Phase.ACTIVE, anchor_at=MONDAY_10_IST, seed=1, last_step="closure"), old, seq(BD, steps=BD["steps"][:2]))
    assert eng._next_step(gone, seq(BD, steps=BD["steps"][:2])) is None


# ---- properties ------------------------------------------------------------------------------------

ZONES = ["Asia/Kolkata", "America/New_York", "Europe/London", "Australia/Sydney", "America/Los_Angeles"]
instants = st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(UTC))
event_kinds = st.sampled_from(["reply", "ooo", "ooo-dated", "soft", "hard", "unsub", "pause", "resume", "unenroll", "task"])


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Sequence, BusinessCalendar, eng.State]:
    definition = seq(draw(st.sampled_from([BD, BD_AT, CHECK_IN])))
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    country = draw(st.sampled_from([None, "IN", "US", "GB", "AU"]))
    window = Window.parse(draw(st.sampled_from(["mon-fri", "mon,wed,fri", "tue-sat"])), draw(st.sampled_from(["09:00-17:30", "08:00-12:00", "13:00-19:00"])))
    calendar = BusinessCalendar(tz, window, country_holidays(country)) if country else BusinessCalendar(tz, window)
    return definition, calendar, eng.State.start(draw(instants), draw(st.integers(0, 2**40)))


def _make(kind: str, at: dt.datetime) -> eng.Event:
    return {
        "reply": eng.Replied(at=at),
        "ooo": eng.AutoReplied(at=at),
        "ooo-dated": eng.AutoReplied(at=at, until=at + dt.timedelta(days=6)),
        "soft": eng.Bounced(at=at, hard=False),
        "hard": eng.Bounced(at=at, hard=True),
        "unsub": eng.Unsubscribed(at=at),
        "pause": eng.PauseRequested(at=at, until=at + dt.timedelta(days=2)),
        "resume": eng.ResumeRequested(at=at),
        "unenroll": eng.Unenrolled(at=at),
        "task": eng.TaskFinished(at=at, step_key="call"),
    }[kind]


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_planned_steps_are_in_the_window_not_on_holidays_and_never_go_backwards(case: tuple[Sequence, BusinessCalendar, eng.State]) -> None:
    definition, calendar, state = case
    actions = eng.plan(state, definition, calendar)
    times = [a.at for a in actions]
    assert times == sorted(times)
    assert all(t >= state.anchor_at for t in times)
    for action in actions:
        if isinstance(action, (eng.SendEmail, eng.CreateTask, eng.Escalate)):
            assert calendar.is_open(action.at), action


@settings(max_examples=150, deadline=None)
@given(scenario(), st.lists(st.tuples(event_kinds, st.integers(0, 90 * 24)), max_size=8), st.lists(st.integers(0, 72 * 60), min_size=1, max_size=6))
def test_any_history_of_events_keeps_the_machine_sound(case: tuple[Sequence, BusinessCalendar, eng.State], history: list[tuple[str, int]], delays: list[int]) -> None:
    """Drive the machine through random events at random times, doing what is due in between; each
    email goes out some minutes after it was handed over (a queue, a window, a backoff)."""
    definition, calendar, state = case
    sent: set[str] = set()
    now = state.anchor_at
    pending = eng.next_action_at(state, definition, calendar)  # as stored at enrollment
    last_out = state.anchor_at  # when the last email went out
    in_flight: list[tuple[dt.datetime, str]] = []

    def check(decision: eng.Decision, at: dt.datetime) -> None:
        for action in decision.actions:
            assert action.at == at
            if isinstance(action, eng.SendEmail):
                assert action.step_key not in sent, "a step was sent twice"
                assert not in_flight, "a step was handed over before its predecessor went out"
                assert action.at >= last_out, "a step before its predecessor went out"
                sent.add(action.step_key)
                in_flight.append((at + dt.timedelta(minutes=delays[len(sent) % len(delays)]), action.step_key))
            if isinstance(action, (eng.SendEmail, eng.CreateTask, eng.Escalate)):
                assert calendar.is_open(action.at), action
        if decision.next_action_at is not None:
            assert decision.next_action_at >= at or decision.state.phase is eng.Phase.PAUSED

    for kind, hours in sorted(history, key=lambda h: h[1]):
        at = max(state.anchor_at + dt.timedelta(hours=hours), now)
        # the scheduler does everything due before the event, in order; the outbox sends meanwhile
        for _ in range(50):
            if in_flight and in_flight[0][0] <= at and (pending is None or in_flight[0][0] <= pending):
                done_at, key = in_flight.pop()
                done_at = max(done_at, now)
                decision = eng.decide(state, definition, [eng.EmailDone(at=done_at, step_key=key)], done_at, calendar)
                last_out = done_at
                check(decision, done_at)
                state, now, pending = decision.state, done_at, decision.next_action_at
                continue
            if pending is None or pending > at:
                break
            tick = max(pending, now)
            decision = eng.decide(state, definition, (), tick, calendar)
            check(decision, tick)
            assert decision.state != state or (decision.next_action_at or tick) > tick, "no progress"
            state, now, pending = decision.state, tick, decision.next_action_at
        stopped_before = state.phase in eng.TERMINAL
        decision = eng.decide(state, definition, [_make(kind, at)], at, calendar)
        check(decision, at)
        state, now, pending = decision.state, at, decision.next_action_at
        if stopped_before:
            assert decision.actions == ()
        if state.phase in eng.TERMINAL:
            assert pending is None
            assert eng.plan(state, definition, calendar) == []
        if kind in ("hard", "unsub", "unenroll") and not stopped_before:
            assert state.phase is eng.Phase.STOPPED


@settings(max_examples=100, deadline=None)
@given(scenario(), st.integers(0, 60 * 24))
def test_a_stopped_enrollment_plans_nothing(case: tuple[Sequence, BusinessCalendar, eng.State], hours: int) -> None:
    definition, calendar, state = case
    at = state.anchor_at + dt.timedelta(hours=hours)
    stopped = eng.decide(state, definition, [eng.Unenrolled(at=at)], at, calendar).state
    assert stopped.phase is eng.Phase.STOPPED
    assert eng.plan(stopped, definition, calendar) == []
    later = eng.decide(stopped, definition, [eng.Replied(at=at), eng.ResumeRequested(at=at)], at + dt.timedelta(days=400), calendar)
    assert later.actions == () and later.state == stopped


@pytest.mark.parametrize("data", [BD, BD_AT], ids=["after", "at"])
def test_a_late_intro_moves_its_follow_ups_and_nothing_goes_before_it(data: dict[str, Any]) -> None:
    definition = seq(data)
    handed = eng.decide(eng.State.start(MONDAY_10_IST, 7), definition, (), MONDAY_10_IST, cal())
    assert [type(a) for a in handed.actions] == [eng.SendEmail]
    assert handed.state.sending == "intro" and handed.next_action_at is None  # nothing while it is not out
    week_later = MONDAY_10_IST + dt.timedelta(days=7)
    assert eng.decide(handed.state, definition, (), week_later, cal()).actions == ()  # however long it takes
    on_time = eng.plan(out(handed, MONDAY_10_IST, definition), definition, cal())
    late = eng.plan(out(handed, MONDAY_10_IST + dt.timedelta(days=1), definition), definition, cal())
    assert isinstance(late[0], eng.SendEmail) and late[0].step_id == "proposal-check"
    # the follow-up waits counting from when the intro went out: one day later, one day later (windows aside)
    assert dt.timedelta(hours=20) <= late[0].at - on_time[0].at <= dt.timedelta(days=4)


def test_the_last_email_in_flight_holds_escalation_and_the_end() -> None:
    definition = seq(BD, steps=[{"id": "intro", "template": "t"}], dormant=None)
    handed = eng.decide(eng.State.start(MONDAY_10_IST, 1), definition, (), MONDAY_10_IST, cal())
    assert handed.state.phase is eng.Phase.ACTIVE and handed.next_action_at is None
    # an answer before it goes out still stops the enrollment (it is not over yet)
    replied = eng.decide(handed.state, definition, [eng.Replied(at=MONDAY_10_IST)], MONDAY_10_IST, cal())
    assert replied.state.phase is eng.Phase.STOPPED
    failed = eng.decide(handed.state, definition, [eng.EmailDone(at=MONDAY_10_IST, step_key="intro", sent=False)], MONDAY_10_IST, cal())
    assert failed.state.sending is None and failed.next_action_at is not None  # a failed email does not hold the rest for ever


def test_an_email_done_for_another_step_changes_nothing() -> None:
    definition = seq(BD)
    handed = eng.decide(eng.State.start(MONDAY_10_IST, 1), definition, (), MONDAY_10_IST, cal())
    other = eng.apply_event(handed.state, definition, eng.EmailDone(at=MONDAY_10_IST, step_key="reminder"), cal())
    assert other == (handed.state, [])


def test_the_timeline_of_an_enrollment_with_an_email_in_flight_goes_on_from_it() -> None:
    definition = seq(BD)
    handed = eng.decide(eng.State.start(MONDAY_10_IST, 4), definition, (), MONDAY_10_IST, cal())
    ahead = eng.plan(handed.state, definition, cal())
    assert [a.step_id for a in ahead if isinstance(a, eng.SendEmail)] == ["proposal-check", "reminder", "closure"]
    assert ahead == eng.plan(out(handed, MONDAY_10_IST, definition), definition, cal())
