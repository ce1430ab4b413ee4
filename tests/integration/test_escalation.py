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
from tests.pipeline import Pipeline, make_workspace
from tests.servers import Dovecot, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
BD = "bd-client-follow-up"
ANANYA = "ananya.rao@acme.example"  # Priya's lead; Priya's manager is Meera
MEERA = "meera@appneural.example"


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Iterator[Pipeline]:
    workspace = make_workspace(tmp_path / "ws", smtp_server, dovecot)
    if database_url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=database_url).exit_code == 0
    pipe = Pipeline(workspace, database_url, START, stub_broker)
    pipe.app.import_leads(workspace / "examples" / "leads.csv")
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
