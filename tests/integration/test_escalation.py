"""Escalation, the manager's personal note (sent or left in Drafts) and dormancy, against Dovecot and aiosmtpd."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import Enrollment, Event, Message, Person, Task
from outreach.poller import poll_all
from tests.pipeline import Pipeline, pipeline_with_leads
from tests.servers import Dovecot, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
BD = "bd-client-follow-up"
ANANYA = "ananya.rao@acme.example"  # Priya's lead; Priya's manager is Meera
MEERA = "meera@appneural.example"


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Iterator[Pipeline]:
    pipe = pipeline_with_leads(tmp_path / "ws", smtp_server, dovecot, database_url, START, stub_broker)
    pipe.app.enroll(BD, [ANANYA], seed=11)
    pipe.prepare()
    yield pipe
    pipe.close()


def test_no_answer_escalates_to_the_manager_with_the_story_and_leaves_her_note_in_drafts_then_goes_dormant(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    pipeline.run_until(START + dt.timedelta(days=21))
    to_lead = [r.message for r in smtp_server.received if r.recipients == [ANANYA]]
    to_meera = [r.message for r in smtp_server.received if r.recipients == [MEERA]]
    assert len(to_lead) == 4, "intro, two follow-ups and the closure; the call is a task"
    [notice] = to_meera
    assert notice["Subject"].startswith("No answer from Ananya Rao (") and notice["Subject"].endswith(") after bd-client-follow-up")
    assert notice["From"].addresses[0].addr_spec == "priya@appneural.example", "from the owner's mailbox"
    text = notice.get_body(("plain",)).get_content()
    for sent in to_lead:
        assert sent["Subject"] in text, "every email sent is in the story"
    assert f"outreach lead show {ANANYA}" in text and "call" in text.lower()
    assert notice["List-Unsubscribe"] is None, "no unsubscribe link in mail to the team"

    [draft] = dovecot.messages(MEERA, "Drafts")
    assert draft["To"].addresses[0].addr_spec == ANANYA and draft["From"].addresses[0].addr_spec == MEERA
    body = draft.get_body(("plain",)).get_content()
    assert "Meera Nair" in body and "Head of Business Development" in body, "the manager's own name and signature"
    assert not [r for r in smtp_server.received if r.recipients == [ANANYA] and r.message["From"].addresses[0].addr_spec == MEERA], "a draft is not sent"
    with pipeline.app.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=ANANYA))).one()
        assert enrollment.phase == "escalated"
        review = session.scalars(select(Task).where(Task.channel == "review")).one()
        assert review.assignee_id == session.scalars(select(Person.id).where(Person.email == MEERA)).one()
        assert review.title.startswith(f"Review {ANANYA}") and "outreach lead show" in review.note
        note = session.scalars(select(Message).where(Message.step_key == "escalate-message")).one()
        assert note.status == "drafted" and note.kind == "draft"

    # Meera personalises and sends it from her mail client: it shows up in her Sent folder
    sent = EmailMessage()
    for name in ("From", "To", "Subject"):
        sent[name] = str(draft[name])
    sent["Message-ID"] = "<meera-personal@appneural.example>"
    sent["Date"] = "Mon, 14 Dec 2026 10:00:00 +0530"
    sent.set_content("Hi Ananya, a personal note from me. " + body[:200])
    client = dovecot.client(MEERA)
    try:
        client.append("Sent", sent.as_bytes(), msg_time=pipeline.clock.now())
    finally:
        client.logout()
    poll_all(pipeline.app)
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Message.status).where(Message.step_key == "escalate-message")).one() == "sent"
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.lead_id == enrollment.lead_id).order_by(Event.id))]
        assert "escalation-message-sent" in kinds and "owner-replied" in kinds

    pipeline.run_until(START + dt.timedelta(days=40))
    with pipeline.app.sessions() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=ANANYA), Enrollment.sequence_name == BD)).one()
        assert enrollment.phase == "dormant" and enrollment.lead.status == "Dormant"
        revisit = session.scalars(select(Event).where(Event.kind == "dormant")).one()
        assert "revisit" in revisit.key_points


def _reply(to: EmailMessage, text: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Ananya Rao <{ANANYA}>"
    msg["To"] = str(to["From"])
    msg["Subject"] = f"Re: {to['Subject']}"
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = to["Message-ID"]
    msg["References"] = to["Message-ID"]
    msg.set_content(text)
    return msg.as_bytes()


def test_a_reply_nobody_answers_within_the_sla_goes_to_the_manager_once(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    pipeline.run_until(START + dt.timedelta(hours=2))
    [intro] = [r.message for r in smtp_server.received if r.recipients == [ANANYA]]
    dovecot.append("priya@appneural.example", "INBOX", _reply(intro, "Could you send the pricing for 40 seats?", "<pricing@acme.example>"))
    poll_all(pipeline.app)
    with pipeline.app.sessions() as session:
        answer = session.scalars(select(Task).where(Task.step_key.like("answer:%"))).one()
        replied_at = session.scalars(select(Event.at).where(Event.kind == "reply")).one()
    assert dt.timedelta(hours=4) <= answer.due_at - replied_at <= dt.timedelta(days=4), "4 business hours, weekends and nights excluded"
    pipeline.run_until(answer.due_at - dt.timedelta(minutes=1))
    assert not [r for r in smtp_server.received if r.recipients == [MEERA]], "not before the SLA runs out"
    pipeline.run_until(answer.due_at + dt.timedelta(days=3))
    [notice] = [r.message for r in smtp_server.received if r.recipients == [MEERA]]
    assert "reply not answered within 4 business hours" in notice["Subject"]
    assert "Could you send the pricing for 40 seats?" in notice.get_body(("plain",)).get_content()
    with pipeline.app.sessions() as session:
        [review] = session.scalars(select(Task).where(Task.step_key.like("sla:%"))).all()
        assert review.assignee_id == session.scalars(select(Person.id).where(Person.email == MEERA)).one()


def test_an_answer_in_time_means_no_escalation(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    pipeline.run_until(START + dt.timedelta(hours=2))
    [intro] = [r.message for r in smtp_server.received if r.recipients == [ANANYA]]
    dovecot.append("priya@appneural.example", "INBOX", _reply(intro, "Could you send the pricing?", "<pricing@acme.example>"))
    poll_all(pipeline.app)
    own = EmailMessage()
    own["From"], own["To"], own["Subject"] = "Priya Sharma <priya@appneural.example>", ANANYA, f"Re: {intro['Subject']}"
    own["Message-ID"], own["In-Reply-To"] = "<priya-answer@appneural.example>", "<pricing@acme.example>"
    own.set_content("Here it is.")
    client = dovecot.client("priya@appneural.example")
    try:
        client.append("Sent", own.as_bytes(), msg_time=pipeline.clock.now())
    finally:
        client.logout()
    poll_all(pipeline.app)
    pipeline.run_until(START + dt.timedelta(days=7))
    assert not [r for r in smtp_server.received if r.recipients == [MEERA]]
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Task.status).where(Task.step_key.like("answer:%"))).one() == "done"
        assert not session.scalars(select(Task).where(Task.step_key.like("sla:%"))).all()


@pytest.mark.parametrize(
    ("text", "negative"),
    [
        ("Honestly, the engineer was rude and the issue is still not fixed. Not happy.", True),
        ("Thank you, the team did a great job and everything works.", False),
    ],
)
def test_negative_feedback_on_aftercare_goes_to_the_manager_within_a_business_day(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, text: str, negative: bool) -> None:
    pipeline.app.enroll("aftercare-feedback", [ANANYA], seed=5)
    pipeline.run_until(START + dt.timedelta(hours=2))
    with pipeline.app.sessions() as session:
        thank_you_id = session.scalars(select(Message.message_id).where(Message.step_key.like("thank-you%"))).one()
    [thank_you] = [r.message for r in smtp_server.received if r.message["Message-ID"] == thank_you_id]
    dovecot.append("priya@appneural.example", "INBOX", _reply(thank_you, text, "<feedback@acme.example>"))
    poll_all(pipeline.app)
    pipeline.run_until(START + dt.timedelta(hours=3))
    with pipeline.app.sessions() as session:
        reviews = session.scalars(select(Task).where(Task.step_key.like("negative:%"))).all()
        reply_at = session.scalars(select(Event.at).where(Event.kind == "reply")).one()
    notices = [r.message for r in smtp_server.received if r.recipients == [MEERA]]
    if negative:
        [review] = reviews
        assert review.due_at - reply_at <= dt.timedelta(days=4) and "rude" in review.note
        assert len(notices) == 1 and notices[0]["Subject"].endswith(": negative feedback")
    else:
        assert not reviews and not notices
