"""Every shipped sequence end to end on the real pipeline (scheduler, worker, aiosmtpd, Dovecot, the
poller), on SQLite under a fake clock, with three leads: one who never answers, followed to the
sequence's last state; one who answers happily; one who answers unhappily. Each file in
sequences/ needs a story here, so a new sequence is driven too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import Enrollment, Event, Lead, Message, Task
from outreach.poller import poll_all
from outreach.runner import next_wakeup
from tests.pipeline import ROOT, Pipeline, pipeline_with_leads
from tests.servers import Dovecot, SmtpServer

START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)  # a Monday, 08:30 in India
SHIPPED = sorted(path.stem for path in (ROOT / "sequences").glob("*.yaml"))
# three of Priya's leads in India (Priya's manager is Meera); Arjun has no company on file
SILENT = "ananya.rao@acme.example"
HAPPY = "vikram@sundaram.example.com"
UNHAPPY = "arjun.kapoor@example.org"
MEERA = "meera@appneural.example"
ANSWERS = {
    HAPPY: "Thank you, the team did a great job and everything works. Happy to talk again next quarter.",
    UNHAPPY: "Honestly, the engineer was rude and the issue is still not fixed. Not happy.",
}
QUIET = frozenset({"enrolled", "email-sent"})  # events every story has; the rest are its milestones


@dataclass(frozen=True)
class Email:
    step_key: str
    template: str
    thread: int  # the conversation it is in, counted from 1; the first email of each has no In-Reply-To
    days: tuple[float, float]  # sent this many days after enrollment, at the earliest and the latest


@dataclass(frozen=True)
class Story:
    """What a sequence does to a lead, as its YAML says."""

    emails: tuple[Email, ...]  # to a lead who never answers, in this order, within `days`
    days: int
    silent_end: str  # the phase of a lead who never answers, after `days`
    milestones: tuple[str, ...]  # the events of that enrollment other than QUIET ones, in order
    answer_to: str  # the step whose email the other two leads answer
    answered_end: str  # their phase then
    reply_sla: str  # an answer nobody takes up within this goes to the owner's manager
    negative_escalates: bool = False  # an unhappy answer goes to the manager at once
    continues: bool = False  # the emails go on after an answer
    notices: tuple[str, ...] = ()  # how the subjects to the manager about the silent lead end
    revisits_in: str | None = None  # the sequence the silent lead is in at the end


STORIES = {
    "aftercare-feedback": Story(
        emails=(
            Email("thank-you", "aftercare_thank_you", 1, (0, 1)),
            Email("feedback-request", "feedback_request", 1, (2, 3)),  # a day after Monday's thank-you is Tue 24 Nov, an Indian holiday
            Email("feedback-reminder", "feedback_reminder", 1, (6, 10)),
        ),
        days=21,
        silent_end="completed",
        milestones=("completed",),
        answer_to="feedback-request",
        answered_end="stopped",
        reply_sla="4 business hours",
        negative_escalates=True,
    ),
    "bd-client-follow-up": Story(
        emails=(
            Email("intro", "initial_outreach", 1, (0, 1)),
            Email("proposal-check", "proposal_follow_up", 1, (2, 5)),
            Email("reminder", "polite_reminder", 1, (5, 8)),
            Email("closure", "closure", 1, (14, 17)),
        ),
        days=80,
        silent_end="completed",
        milestones=("task-opened", "escalated", "notice-sent", "draft-saved", "dormant", "revisit"),
        answer_to="proposal-check",
        answered_end="stopped",
        reply_sla="4 business hours",
        notices=("after bd-client-follow-up",),
        revisits_in="re-engagement",
    ),
    "customer-updates": Story(
        emails=(
            Email("welcome", "customer_welcome", 1, (0, 1)),
            Email("first-update", "customer_update_setup", 2, (14, 17)),
            Email("second-update", "customer_update_progress", 3, (42, 46)),
        ),
        days=60,
        silent_end="completed",
        milestones=("completed",),
        answer_to="welcome",
        answered_end="stopped",
        reply_sla="1 business day",
    ),
    "post-purchase-satisfaction": Story(
        emails=(Email("satisfaction-check", "purchase_satisfaction", 1, (2, 8)),),
        days=14,
        silent_end="completed",
        milestones=("completed",),
        answer_to="satisfaction-check",
        answered_end="completed",  # with its only email sent, before the answer came
        reply_sla="1 business day",
    ),
    "re-engagement": Story(
        emails=(
            Email("check-in", "reengage_check_in", 1, (0, 1)),
            Email("last-note", "reengage_last_note", 1, (7, 10)),
        ),
        days=40,
        silent_end="dormant",  # for good: no revisit
        milestones=("dormant",),
        answer_to="check-in",
        answered_end="stopped",
        reply_sla="1 business day",
    ),
    "support-check-in": Story(
        emails=(
            Email("check-in", "support_check_in", 1, (0, 1)),
            Email("check-in@2", "support_check_in", 2, (28, 34)),
            Email("check-in@3", "support_check_in", 3, (59, 66)),
        ),
        days=70,
        silent_end="active",  # monthly, until unenrolled
        milestones=(),
        answer_to="check-in",
        answered_end="active",
        reply_sla="1 business day",
        continues=True,
    ),
}


def test_every_shipped_sequence_has_a_story_and_every_story_a_sequence() -> None:
    assert sorted(STORIES) == SHIPPED, "write a Story for each file in sequences/, and drop those of removed files"


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, stub_broker: Any) -> Iterator[Pipeline]:
    pipe = pipeline_with_leads(tmp_path / "ws", smtp_server, dovecot, f"sqlite:///{tmp_path / 'outreach.sqlite'}", START, stub_broker)
    pipe.prepare()
    yield pipe
    pipe.close()


def _play(pipe: Pipeline, end: dt.datetime, between: Callable[[], None]) -> None:
    """`between()` (the leads act), the poller reads every mailbox, then the scheduler does what is
    next due; again, until nothing more is due before `end`."""
    while True:
        between()
        poll_all(pipe.app)
        upcoming = next_wakeup(pipe.app)
        if upcoming is None or upcoming > end:
            pipe.run_until(end)
            return
        pipe.run_until(upcoming)


@dataclass(frozen=True)
class Sent:
    email: EmailMessage
    step_key: str
    template: str
    enrollment_id: int | None


def _received(pipe: Pipeline, smtp: SmtpServer) -> list[Sent]:
    """What the SMTP server received, in order, with the outbox row each one was sent for."""
    with pipe.app.sessions() as session:
        rows = {m.message_id: m for m in session.scalars(select(Message).where(Message.direction == "out"))}
    sent = []
    for r in smtp.received:
        row = rows[r.message["Message-ID"]]
        sent.append(Sent(r.message, row.step_key or "", row.template or "", row.enrollment_id))
    return sent


def _to(sent: list[Sent], email: str) -> list[Sent]:
    return [s for s in sent if s.email["To"].addresses[0].addr_spec == email]


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _history(pipe: Pipeline, lead: str) -> str:
    """The lead's outbox rows and record, for a failure's message."""
    with pipe.app.sessions() as session:
        rows = session.scalars(select(Message).where(Message.recipient == lead).order_by(Message.id)).all()
        lines = [f"  message {m.id} {m.step_key} {m.status} planned {m.planned_at} not_before {m.not_before} sent {m.sent_at} attempts {m.attempts} {m.error or ''}" for m in rows]
        lead_id = rows[0].lead_id if rows else None
        events = session.scalars(select(Event).where(Event.lead_id == lead_id).order_by(Event.at, Event.id)).all()
        lines += [f"  {e.at} {e.kind}: {e.key_points}" for e in events]
    return "\n".join(lines)


def _check_emails(pipe: Pipeline, sequence: str, lead: str, sent: list[Sent], expected: tuple[Email, ...]) -> None:
    """In order, on time, with the right templates, and threaded: each email after the first in its
    thread answers the one before it."""
    assert [(s.step_key, s.template) for s in sent] == [(e.step_key, e.template) for e in expected], lead
    threads: dict[int, list[EmailMessage]] = {}
    for s, e in zip(sent, expected, strict=True):
        msg, what = s.email, f"{sequence}, {s.step_key} to {lead}"
        low, high = e.days
        if not dt.timedelta(days=low) <= msg["Date"].datetime - START <= dt.timedelta(days=high):
            pytest.fail(f"{what}: sent {msg['Date']}, not {low}-{high} days after {START:%a %d %b %H:%M} UTC\n{_history(pipe, lead)}")
        preview = pipe.app.preview(sequence, s.step_key.split("@")[0], lead)
        body = msg.get_body(("plain",))
        assert body is not None and _lines(body.get_content()) == _lines(preview.rendered.text), f"{what}: not {e.template}'s text"
        before = threads.setdefault(e.thread, [])
        if not before:
            assert msg["In-Reply-To"] is None and msg["References"] is None, f"{what} starts a thread"
            assert msg["Subject"] == preview.rendered.subject, what
        else:
            ids = [m["Message-ID"] for m in before]
            assert msg["In-Reply-To"] == ids[-1], f"{what} answers the email before it in its thread"
            assert msg["References"].split() == ids, what
            assert msg["Subject"] == f"Re: {before[0]['Subject']}", what
        before.append(msg)


def _answer(pipe: Pipeline, dovecot: Dovecot, lead: str, to: EmailMessage, text: str) -> None:
    """`lead` answers `to`: the answer lands now in the inbox of the mailbox it came from."""
    now = pipe.clock.now()
    msg = EmailMessage()
    msg["From"] = lead
    msg["To"] = str(to["From"])
    msg["Subject"] = f"Re: {to['Subject']}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<answer.{lead}>"
    msg["In-Reply-To"] = to["Message-ID"]
    msg["References"] = to["Message-ID"]
    msg.set_content(text)
    client = dovecot.client(to["From"].addresses[0].addr_spec)
    try:
        client.append("INBOX", msg.as_bytes(), msg_time=now)
    finally:
        client.logout()


def _enrollment(pipe: Pipeline, sequence: str, lead: str) -> Enrollment:
    with pipe.app.sessions() as session:
        return session.scalars(select(Enrollment).where(Enrollment.sequence_name == sequence, Enrollment.lead.has(email=lead))).one()


@pytest.mark.parametrize("sequence", SHIPPED)
def test_a_shipped_sequence_runs_its_course_and_stops_when_answered(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, sequence: str) -> None:
    story = STORIES.get(sequence)
    assert story is not None, f"sequences/{sequence}.yaml has no story in this file"
    pipeline.app.enroll(sequence, [SILENT, HAPPY, UNHAPPY], seed=7)
    enrollments = {lead: _enrollment(pipeline, sequence, lead).id for lead in (SILENT, HAPPY, UNHAPPY)}
    answered: list[str] = []

    def leads_answer() -> None:
        for lead, text in ANSWERS.items():
            mine = [s for s in _to(_received(pipeline, smtp_server), lead) if s.step_key == story.answer_to]
            if mine and lead not in answered:
                _answer(pipeline, dovecot, lead, mine[0].email, text)
                answered.append(lead)

    _play(pipeline, START + dt.timedelta(days=story.days), leads_answer)
    assert sorted(answered) == sorted(ANSWERS), f"{story.answer_to} did not reach every lead within {story.days} days"
    sent = _received(pipeline, smtp_server)

    # the lead who never answers: every email, to the last state
    silent = _to(sent, SILENT)
    revisited = [s for s in silent if s.enrollment_id != enrollments[SILENT]]
    mine = [s for s in silent if s.enrollment_id == enrollments[SILENT]]
    _check_emails(pipeline, sequence, SILENT, mine, story.emails)
    sender = mine[0].email["From"].addresses[0].addr_spec
    in_sent = {m["Message-ID"] for m in dovecot.messages(sender, "Sent")}
    assert {s.email["Message-ID"] for s in mine} <= in_sent, f"a copy of each is in {sender}'s Sent folder"
    assert _enrollment(pipeline, sequence, SILENT).phase == story.silent_end
    with pipeline.app.sessions() as session:
        kinds = session.scalars(select(Event.kind).where(Event.enrollment_id == enrollments[SILENT]).order_by(Event.id))
        assert tuple(k for k in kinds if k not in QUIET) == story.milestones
    if "draft-saved" in story.milestones:
        [draft] = dovecot.messages(MEERA, "Drafts")
        assert draft["To"].addresses[0].addr_spec == SILENT, "the manager's personal note waits in her Drafts"
    if story.revisits_in:
        assert _enrollment(pipeline, story.revisits_in, SILENT).phase == "active"
        assert revisited and revisited[0].email["In-Reply-To"] is None, "the revisit starts a conversation of its own"
    else:
        assert not revisited

    # the two who answer: nothing more after the answer, unless the sequence goes on by design
    upto = [e.step_key for e in story.emails].index(story.answer_to) + 1
    for lead in ANSWERS:
        _check_emails(pipeline, sequence, lead, _to(sent, lead), story.emails if story.continues else story.emails[:upto])
        assert _enrollment(pipeline, sequence, lead).phase == story.answered_end, lead
        with pipeline.app.sessions() as session:
            replies = session.scalars(select(Event).join(Lead, Lead.id == Event.lead_id).where(Event.kind == "reply", Lead.email == lead)).all()
            status = session.scalars(select(Lead.status).where(Lead.email == lead)).one()
        assert len(replies) == 1 and replies[0].key_points.startswith(ANSWERS[lead][:40]), lead
        if story.answered_end == "stopped":
            assert status == "Active", f"{lead} answered: a conversation is open"

    # what the owner's manager hears: the silent lead's escalation, answers nobody took up, unhappy ones at once
    assert {s.email["To"].addresses[0].addr_spec for s in sent} <= {SILENT, HAPPY, UNHAPPY, MEERA}
    with pipeline.app.sessions() as session:
        rows = session.execute(select(Message.message_id, Lead.email).join(Lead, Lead.id == Message.lead_id).where(Message.kind == "notify"))
        about = {message_id: email for message_id, email in rows}
        reviews = session.scalars(select(Task.lead_id).where(Task.step_key.like("negative:%"))).all()
    notices = sorted((about[s.email["Message-ID"]], s.email["Subject"]) for s in _to(sent, MEERA))
    expected = sorted(
        [(SILENT, end) for end in story.notices]
        + [(UNHAPPY, "negative feedback") for _ in range(story.negative_escalates)]
        + [(lead, f"reply not answered within {story.reply_sla}") for lead in ANSWERS]
    )
    assert len(notices) == len(expected) and all(lead == want and subject.endswith(end) for (lead, subject), (want, end) in zip(notices, expected)), notices
    assert len(reviews) == story.negative_escalates
