"""The sending pipeline against real servers: aiosmtpd, Dovecot, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from outreach.db.models import Enrollment, Event, Lead, Message, Suppression, Task
from outreach.sequences.calendar import country_holidays
from tests.pipeline import Pipeline, make_workspace
from tests.servers import Dovecot, Faults, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 08:30 in India
BD = "bd-client-follow-up"


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Any:
    workspace = make_workspace(tmp_path / "ws", smtp_server, dovecot)
    if database_url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    pipe = Pipeline(workspace, database_url, START, stub_broker)
    yield pipe
    pipe.close()


def enroll_all(pipe: Pipeline, sequence: str = BD) -> list[str]:
    pipe.app.import_leads(pipe.app.settings.root / "examples" / "leads.csv")
    result = pipe.app.enroll(sequence, None, all_leads=True, seed=11)
    pipe.prepare()
    return result.enrolled


def by_recipient(smtp: SmtpServer, *, team: bool = False) -> dict[str, list[Any]]:
    """What each lead received (or, with team=True, what the team received: escalation notices)."""
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item in smtp.received:
        if item.recipients[0].endswith("@appneural.example") == team:
            grouped[item.recipients[0]].append(item.message)
    return grouped


def test_a_sequence_runs_on_time_threaded_and_once(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    leads = enroll_all(pipeline)
    pipeline.run_until(START + dt.timedelta(days=45))  # the cadence, escalation and dormancy; the revisit comes later

    received = by_recipient(smtp_server)
    assert sorted(received) == sorted(leads)
    ids = [m["Message-ID"] for msgs in received.values() for m in msgs]
    assert len(ids) == len(set(ids)), "a message arrived twice"
    with pipeline.app.sessions() as session:
        for email, messages in received.items():
            enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=email), Enrollment.sequence_name == BD)).one()
            lead = enrollment.lead
            zone = ZoneInfo(lead.timezone)
            steps = [m["X-Outreach-Step"] for m in messages] if messages[0]["X-Outreach-Step"] else None
            # four emails: intro, proposal-check, reminder, closure (the call is a task)
            assert len(messages) == 4, (email, [m["Subject"] for m in messages])
            root = messages[0]
            assert not root["In-Reply-To"]
            for i, msg in enumerate(messages[1:], start=1):
                assert msg["Subject"] == f"Re: {root['Subject']}"
                assert msg["In-Reply-To"] == messages[i - 1]["Message-ID"]
                assert msg["References"].split() == [m["Message-ID"] for m in messages[:i]]
            for msg in messages:
                local = parsedate_to_datetime(msg["Date"]).astimezone(zone)
                assert local.weekday() < 5 and dt.time(9, 0) <= local.time() < dt.time(17, 30), (email, local)
                assert local.date() not in country_holidays("IN")
                assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                assert re.match(r"<http://127\.0\.0\.1:8025/u/[\w-]{44}>, <mailto:", msg["List-Unsubscribe"])  # opaque: no address in it
                assert msg["Message-ID"].endswith("@appneural.example>")
                assert msg.get_body(("plain",)) is not None
            dates = [parsedate_to_datetime(m["Date"]) for m in messages]
            assert dates == sorted(dates)
            assert steps is None
            kinds = list(session.scalars(select(Event.kind).where(Event.enrollment_id == enrollment.id).order_by(Event.id)))
            assert kinds.count("email-sent") == 4 and "task-opened" in kinds and "escalated" in kinds and "dormant" in kinds
        sent = session.scalars(select(Message).where(Message.direction == "out", Message.kind != "draft")).all()
        assert {m.status for m in sent} == {"sent"} and all(m.saved_to_sent for m in sent)
        drafts = session.scalars(select(Message).where(Message.kind == "draft")).all()
        assert len(drafts) == 12 and {m.status for m in drafts} == {"drafted"}, "each manager's note waits in Drafts"
    # every lead's escalation reached the reviewer: Meera manages the team, and reviews her own leads
    assert {k: len(v) for k, v in by_recipient(smtp_server, team=True).items()} == {"meera@appneural.example": 12}
    # every message has its copy in the sender's Sent folder
    in_sent = {m["Message-ID"] for box in ("priya@appneural.example", "rahul@appneural.example", "meera@appneural.example", "support@appneural.example") for m in dovecot.messages(box, "Sent")}
    assert set(ids) <= in_sent


def test_a_reply_a_second_before_the_follow_up_stops_it(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    enroll_all(pipeline)
    lead = "ananya.rao@acme.example"
    # run until the intro went out, then stop just before the follow-up is due
    pipeline.run_until(START + dt.timedelta(hours=2))
    intro = [r.message for r in smtp_server.received if r.recipients == [lead]]
    assert len(intro) == 1
    with pipeline.app.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=lead), Enrollment.sequence_name == BD)).one()
        due = enrollment.next_action_at
    assert due is not None
    pipeline.run_until(due - dt.timedelta(seconds=2))
    reply = (
        f"From: Ananya Rao <{lead}>\r\nTo: priya@appneural.example\r\nSubject: Re: {intro[0]['Subject']}\r\n"
        f"Message-ID: <reply-1@acme.example>\r\nIn-Reply-To: {intro[0]['Message-ID']}\r\nReferences: {intro[0]['Message-ID']}\r\n"
        f"Date: {pipeline.clock.now():%a, %d %b %Y %H:%M:%S +0000}\r\n\r\nThanks, let's talk on Thursday.\r\n"
    ).encode()
    pipeline.clock.advance(dt.timedelta(seconds=1))
    dovecot.append("priya@appneural.example", "INBOX", reply)
    pipeline.run_until(START + dt.timedelta(days=40))
    assert len([r for r in smtp_server.received if r.recipients == [lead]]) == 1
    with pipeline.app.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=lead), Enrollment.sequence_name == BD)).one()
        assert enrollment.phase == "stopped" and enrollment.lead.status == "Active"
        cancelled = session.scalars(select(Message).where(Message.enrollment_id == enrollment.id, Message.status == "cancelled")).one()
        assert cancelled.step_key == "proposal-check"
        assert session.scalars(select(Event).where(Event.enrollment_id == enrollment.id, Event.kind == "reply")).one().data["message_id"] == "<reply-1@acme.example>"
    # the other leads went on
    assert len(by_recipient(smtp_server)) == 12


def test_temporary_failures_and_dropped_connections_are_retried_until_each_step_is_delivered_once(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    smtp_server.handler.set_faults(Faults(temp_fail_share=0.25, drop_share=0.2, seed=3))
    enroll_all(pipeline)
    pipeline.run_until(START + dt.timedelta(days=45))  # the cadence, escalation and dormancy; the revisit comes later
    assert smtp_server.handler.failures, "the fault injection did nothing"
    received = by_recipient(smtp_server)
    assert all(len(msgs) == 4 for msgs in received.values()) and len(received) == 12
    ids = [m["Message-ID"] for msgs in received.values() for m in msgs]
    assert len(ids) == len(set(ids))
    with pipeline.app.sessions() as session:
        deferred = session.scalars(select(Event).where(Event.kind == "send-deferred")).all()
        assert len(deferred) >= len(smtp_server.handler.failures) * 0.5
        assert any("421" in e.key_points or "451" in e.key_points or "connection" in e.key_points for e in deferred)
        assert {m.status for m in session.scalars(select(Message).where(Message.kind != "draft"))} == {"sent"}
    assert {k: len(v) for k, v in by_recipient(smtp_server, team=True).items()} == {"meera@appneural.example": 12}, "each notice once, too"


def test_a_refused_recipient_is_a_hard_bounce_and_is_suppressed(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    smtp_server.handler.set_faults(Faults(refuse={"oliver.bennett@bennetthale.example"}))
    enroll_all(pipeline)
    pipeline.run_until(START + dt.timedelta(days=20))
    assert "oliver.bennett@bennetthale.example" not in by_recipient(smtp_server)
    with pipeline.app.sessions() as session:
        message = session.scalars(select(Message).where(Message.recipient == "oliver.bennett@bennetthale.example")).one()
        assert message.status == "failed" and "550" in (message.error or "")
        assert session.scalars(select(Suppression.reason).where(Suppression.email == "oliver.bennett@bennetthale.example")).one() == "bounce"
        enrollment = session.get(Enrollment, message.enrollment_id)
        assert enrollment is not None and enrollment.phase == "stopped" and enrollment.lead.status == "Closed"


BLOCKED = "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
FULL = "552 5.2.2 <{}>: Mailbox full"


def test_a_refusal_at_send_time_acts_by_its_reason_not_its_first_digit(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    blocked, full = "oliver.bennett@bennetthale.example", "ananya.rao@acme.example"
    smtp_server.handler.set_faults(Faults(refuse_with={blocked: BLOCKED, full: FULL.format(full)}))
    enroll_all(pipeline)
    pipeline.run_until(START + dt.timedelta(days=6))
    assert not {blocked, full} & set(by_recipient(smtp_server))
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Suppression.email)).all() == [], "neither address is dead"
        refused = session.scalars(select(Message).where(Message.recipient == blocked)).all()
        assert [m.status for m in refused] == ["failed"], "nothing more goes to the lead while the owner looks"
        enrollment = session.get(Enrollment, refused[0].enrollment_id)
        assert enrollment is not None and enrollment.phase == "waiting" and enrollment.lead.status != "Closed"
        task = session.scalars(select(Task).where(Task.lead_id == enrollment.lead_id, Task.status == "open")).one()
        assert "refused (blocked)" in task.title and "spamhaus" in task.note
        lines = session.scalars(select(Event.key_points).where(Event.lead_id == enrollment.lead_id, Event.kind == "bounce")).all()
        assert len(lines) == 1 and "(blocked)" in lines[0] and "the lead stays" in lines[0]
        tried = session.scalars(select(Message).where(Message.recipient == full).order_by(Message.id)).all()
        assert len(tried) >= 2 and {m.status for m in tried} == {"failed"}, "a full mailbox fails each step alone; the next one is tried"
        assert all("552" in (m.error or "") for m in tried)
        assert session.get(Enrollment, tried[0].enrollment_id).phase == "active"  # type: ignore[union-attr]


def test_soft_refusals_at_send_time_count_like_soft_bounces_and_the_third_suppresses(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    full = "ananya.rao@acme.example"
    smtp_server.handler.set_faults(Faults(refuse_with={full: FULL.format(full)}))
    enroll_all(pipeline)
    seen: dict[int, tuple[list[str], str]] = {}  # refusals so far -> (suppressed addresses, the enrollment's phase)
    for day in range(1, 46):
        pipeline.run_until(START + dt.timedelta(days=day))
        with pipeline.app.sessions() as session:
            tried = session.scalars(select(Message).where(Message.recipient == full)).all()
            phase = session.get(Enrollment, tried[0].enrollment_id).phase  # type: ignore[union-attr]
            seen.setdefault(len(tried), (list(session.scalars(select(Suppression.email))), phase))
    assert full not in by_recipient(smtp_server)
    assert seen[2] == ([], "active"), "two soft refusals: the lead stays"
    assert max(seen) == 3 and seen[3] == ([full], "stopped"), "the third suppresses, and nothing more is tried"
    with pipeline.app.sessions() as session:
        lines = session.scalars(select(Event.key_points).where(Event.lead_id == select(Lead.id).where(Lead.email == full).scalar_subquery(), Event.kind == "bounce").order_by(Event.id)).all()
        assert [line.rsplit("; ", 1)[-1] for line in lines] == [
            "soft bounce 1 of 3: this step failed, the lead stays", "soft bounce 2 of 3: this step failed, the lead stays",
            "3 soft bounces in a row: the address is suppressed"]
        assert session.scalars(select(Suppression.reason)).all() == ["bounce"]


def one_mailbox_batch(pipeline: Pipeline, now: dt.datetime) -> list[int]:
    """The biggest batch the relay hands over once the leads are enrolled and planned: one mailbox's."""
    from outreach.scheduler import relay, tick

    enroll_all(pipeline)
    tick(pipeline.app, now=now)
    batches: list[list[int]] = []
    relay(pipeline.app, batches.append, now=now)
    return max(batches, key=len)


def test_a_batch_from_one_mailbox_keeps_each_messages_own_outcome(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    from outreach.delivery import Outcome, deliver_many

    now = START + dt.timedelta(hours=1)
    batch = one_mailbox_batch(pipeline, now)
    with pipeline.app.sessions() as session:
        rows = session.scalars(select(Message).where(Message.id.in_(batch)).order_by(Message.id)).all()
        assert len(rows) >= 3 and len({m.sender for m in rows}) == 1, "a batch is one mailbox's"
        refused = rows[1].recipient
    smtp_server.handler.set_faults(Faults(refuse={refused}))

    outcomes = deliver_many(pipeline.app, batch, now=now)
    assert outcomes[rows[1].id] is Outcome.BOUNCED
    assert all(outcomes[m.id] is Outcome.SENT for m in rows if m.id != rows[1].id)
    assert sorted(by_recipient(smtp_server)) == sorted(m.recipient for m in rows if m.id != rows[1].id)
    # delivered again (the broker may repeat a batch): nothing goes out twice
    assert set(deliver_many(pipeline.app, batch, now=now).values()) == {Outcome.DONE}
    assert len(smtp_server.received) == len(rows) - 1
    with pipeline.app.sessions() as session:
        statuses = {m.id: m.status for m in session.scalars(select(Message).where(Message.id.in_(batch)))}
        assert statuses.pop(rows[1].id) == "failed" and set(statuses.values()) == {"sent"}
        assert session.scalars(select(Suppression.email)).all() == [refused]


def test_an_email_that_cannot_be_written_fails_alone_and_the_batch_goes_on(pipeline: Pipeline, smtp_server: SmtpServer) -> None:
    from outreach.delivery import Outcome, deliver_many

    now = START + dt.timedelta(hours=1)
    batch = one_mailbox_batch(pipeline, now)
    with pipeline.app.sessions.begin() as session:
        rows = session.scalars(select(Message).where(Message.id.in_(batch)).order_by(Message.id)).all()
        broken = rows[1]
        broken.message_id = "<" + "x" * 975 + "@appneural.example>"  # fits its column, but no header line can hold it (RFC 5322: 998)
        broken_id, others = broken.id, [m.recipient for m in rows if m.id != broken.id]

    outcomes = deliver_many(pipeline.app, batch, now=now)
    assert outcomes[broken_id] is Outcome.FAILED
    assert all(outcome is Outcome.SENT for pk, outcome in outcomes.items() if pk != broken_id)
    assert sorted(by_recipient(smtp_server)) == sorted(others)
    with pipeline.app.sessions() as session:
        message = session.get(Message, broken_id)
        assert message is not None and message.status == "failed" and "cannot be written" in (message.error or "")
