"""The IMAP poller against Dovecot: replies, auto-replies, bounces, opt-outs, the owner's answers, faults."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from outreach.db.models import Enrollment, Event, FolderCursor, InboundMail, Message, Suppression, Task
from outreach.mail.reader import FolderReader
from outreach.mail.transport import TemporaryFailure
from outreach.poller import MailboxPoller, poll_all
from tests import corpus
from tests.pipeline import Pipeline, pipeline_with_leads
from tests.servers import Dovecot, Faults, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 08:30 in India
BD = "bd-client-follow-up"
PRIYA = "priya@appneural.example"
ANANYA = "ananya.rao@acme.example"  # Priya's lead at Acme


@pytest.fixture(params=["dovecot", "pymap"])
def dovecot(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Dovecot, and pymap as a second IMAP server implementation for the same suite."""
    if request.param == "dovecot":
        yield request.getfixturevalue("dovecot")
        return
    from tests.pipeline import MAILBOXES, PASSWORD, PASSWORD_ENV
    from tests.servers import Pymap

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = Pymap({box: PASSWORD for box in MAILBOXES}).start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Iterator[Pipeline]:
    pipe = pipeline_with_leads(tmp_path / "ws", smtp_server, dovecot, database_url, START, stub_broker)
    pipe.app.enroll(BD, None, all_leads=True, seed=11)
    pipe.prepare()
    pipe.run_until(START + dt.timedelta(hours=2))  # every intro is out
    yield pipe
    pipe.close()


def sent_to(smtp: SmtpServer, lead: str) -> list[EmailMessage]:
    return [r.message for r in smtp.received if r.recipients == [lead]]


def answer(to: EmailMessage, body: str, *, sender: str = f"Ananya Rao <{ANANYA}>", message_id: str | None = "<answer-1@acme.example>", threaded: bool = True, subject: str | None = None, headers: dict[str, str] | None = None, when: dt.datetime = START) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to["From"]
    msg["Subject"] = subject if subject is not None else f"Re: {to['Subject']}"
    msg["Date"] = format_datetime(when)
    if message_id:
        msg["Message-ID"] = message_id
    if threaded:
        msg["In-Reply-To"] = to["Message-ID"]
        msg["References"] = to["Message-ID"]
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def enrollment_of(pipe: Pipeline, lead: str) -> Enrollment:
    with pipe.app.sessions() as session:
        found = session.scalars(select(Enrollment).where(Enrollment.lead.has(email=lead), Enrollment.sequence_name == BD)).one()
        session.expunge(found)
        return found


def inbound(pipe: Pipeline) -> list[InboundMail]:
    with pipe.app.sessions() as session:
        rows = list(session.scalars(select(InboundMail).order_by(InboundMail.id)))
        session.expunge_all()
        return rows


def test_a_real_reply_in_the_thread_stops_the_sequence_logs_the_new_text_and_asks_the_owner_to_answer(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    original = message_from_bytes((corpus.TALON / "gmail.eml").read_bytes(), policy=policy.default)
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References"):
        del original[name]
    original["From"] = f"Ananya Rao <{ANANYA}>"
    original["To"] = PRIYA
    original["Subject"] = f"Re: {intro['Subject']}"
    original["Message-ID"] = "<gmail-reply@acme.example>"
    original["In-Reply-To"] = intro["Message-ID"]
    original["References"] = intro["Message-ID"]
    dovecot.append(PRIYA, "INBOX", original.as_bytes())

    results = poll_all(pipeline.app)
    assert results[PRIYA].recorded == {"reply": 1}
    [row] = inbound(pipeline)
    assert (row.kind, row.matched_by, row.new_text.strip()) == ("reply", "headers", "Hello")
    assert enrollment_of(pipeline, ANANYA).phase == "stopped"
    with pipeline.app.sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "reply")).one()
        assert event.key_points == "Hello" and event.data["matched_by"] == "headers"
        task = session.scalars(select(Task).where(Task.step_key == f"answer:{row.id}")).one()
        assert task.title.startswith("Answer Ananya Rao") and task.status == "open"
    # polled again, and after a restart of the poller: nothing is recorded twice
    assert poll_all(pipeline.app)[PRIYA].seen == 0
    with pipeline.app.sessions() as session:
        session.query(FolderCursor).delete()
        session.commit()
    poll_all(pipeline.app)
    assert len(inbound(pipeline)) == 1
    # and the sequence sends Ananya nothing more
    pipeline.run_until(START + dt.timedelta(days=30))
    assert len(sent_to(smtp_server, ANANYA)) == 1


def test_the_check_before_a_follow_up_hands_an_out_of_office_to_the_inbound_path_and_waits(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    back = (START + dt.timedelta(days=21)).date()
    ooo = answer(intro, f"I am out of the office until {back:%B %d, %Y} with limited access to email.", subject=f"Automatic reply: {intro['Subject']}", headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"})
    dovecot.append(PRIYA, "INBOX", ooo)
    pipeline.run_until(START + dt.timedelta(days=20))
    assert len(sent_to(smtp_server, ANANYA)) == 1, "no follow-up while Ananya is away"
    [row] = inbound(pipeline)
    assert row.kind == "auto_reply" and row.evidence.get("until") == back.isoformat()
    assert enrollment_of(pipeline, ANANYA).phase == "paused"
    pipeline.run_until(START + dt.timedelta(days=24))
    follow_ups = sent_to(smtp_server, ANANYA)[1:]
    assert follow_ups and all(dt.datetime.fromisoformat(str(m["Date"].datetime.isoformat())).date() >= back for m in follow_ups)


def test_replies_without_threading_headers_match_by_the_lead_or_a_colleague_and_the_subject(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    dovecot.append(PRIYA, "INBOX", answer(intro, "Yes, let's talk.", threaded=False, subject=f"RE: {intro['Subject']}"))
    vikram = "vikram@sundaram.example.com"
    to_vikram = sent_to(smtp_server, vikram)[0]
    owner = str(to_vikram["From"].addresses[0].addr_spec)
    dovecot.append(owner, "INBOX", answer(to_vikram, "Vikram is away; I handle vendors now.", sender="Lakshmi <lakshmi@sundaram.example.com>", message_id="<colleague@sundaram.example.com>", threaded=False, subject=f"Fwd: {to_vikram['Subject']}"))
    dovecot.append(PRIYA, "INBOX", answer(intro, "Unrelated newsletter", sender="news@elsewhere.example", message_id="<news@elsewhere.example>", threaded=False, subject="Weekly news"))
    poll_all(pipeline.app)
    rows = {row.message_id: row for row in inbound(pipeline)}
    assert set(rows) == {"<answer-1@acme.example>", "<colleague@sundaram.example.com>"}, "the newsletter is nobody's business"
    assert rows["<answer-1@acme.example>"].matched_by == "lead-subject"
    assert rows["<colleague@sundaram.example.com>"].matched_by == "domain-subject"
    assert enrollment_of(pipeline, ANANYA).phase == "stopped" and enrollment_of(pipeline, vikram).phase == "stopped"


def test_mail_without_threading_headers_matches_whatever_prefixes_its_client_wrote(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    later = START + dt.timedelta(hours=2)
    dovecot.append(PRIYA, "INBOX", answer(intro, "はい、火曜日にお話ししましょう。", threaded=False, subject=f"返信：RE[2]: {intro['Subject']}", when=later))
    notice = "Ich bin bis zum 14.12. nicht im Büro. In dringenden Fällen wenden Sie sich bitte an meine Kollegin."
    dovecot.append(PRIYA, "INBOX", answer(intro, notice, message_id="<ooo@acme.example>", threaded=False, subject=f"Automatische Antwort: AW: {intro['Subject']}", when=later))
    poll_all(pipeline.app)
    rows = {row.message_id: row for row in inbound(pipeline)}
    assert (rows["<answer-1@acme.example>"].kind, rows["<answer-1@acme.example>"].matched_by) == ("reply", "lead-subject")
    assert (rows["<ooo@acme.example>"].kind, rows["<ooo@acme.example>"].matched_by) == ("auto_reply", "lead-subject")


def test_a_newsletter_from_the_lead_is_on_the_record_as_bulk_and_the_sequence_goes_on(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    news = "Acme's news this month.\n\nThis is an automated message. To unsubscribe, click here or reply 'remove me'."
    dovecot.append(PRIYA, "INBOX", answer(intro, news, message_id="<news@acme.example>", threaded=False, subject=str(intro["Subject"]),
                                          headers={"List-Id": "<news.acme.example>", "List-Unsubscribe": "<https://acme.example/u>", "Precedence": "bulk"}))
    assert poll_all(pipeline.app)[PRIYA].recorded == {"bulk": 1}
    [row] = inbound(pipeline)
    assert (row.kind, row.matched_by, row.evidence["header"]) == ("bulk", "lead-subject", "List-Id")
    assert enrollment_of(pipeline, ANANYA).phase == "active", "neither an answer nor an absence"
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Event.kind).where(Event.data["inbound"].as_integer() == row.id)).all() == ["bulk-mail"]
        assert session.scalars(select(Suppression.email)).all() == [] and session.scalars(select(Task)).all() == []
    pipeline.run_until(START + dt.timedelta(days=8))
    assert len(sent_to(smtp_server, ANANYA)) > 1, "the follow-ups go out"


def test_a_hard_bounce_suppresses_and_an_opt_out_reply_closes(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    oliver = next(r.recipients[0] for r in smtp_server.received if r.recipients[0] != ANANYA)  # any other lead mailed so far
    to_oliver = sent_to(smtp_server, oliver)[0]
    owner = str(to_oliver["From"].addresses[0].addr_spec)
    report = EmailMessage()
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = owner
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = "<bounce-1@mx.example.net>"
    report["Auto-Submitted"] = "auto-replied"
    report.set_content(f"This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you that your message could not be delivered.\n\n<{oliver}>: host mx said: 550 5.1.1 <{oliver}>: Recipient address rejected: User unknown\n")
    report.make_mixed()
    status = EmailMessage()
    status.set_content(f"Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; {oliver}\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n")
    report.attach(status)
    raw = report.as_bytes().replace(b"multipart/mixed", b'multipart/report; report-type="delivery-status"', 1)
    dovecot.append(owner, "INBOX", raw)
    intro = sent_to(smtp_server, ANANYA)[0]
    dovecot.append(PRIYA, "INBOX", answer(intro, "Please remove me from your mailing list.", message_id="<stop@acme.example>"))
    poll_all(pipeline.app)
    kinds = {row.message_id: (row.kind, row.matched_by) for row in inbound(pipeline)}
    assert kinds["<stop@acme.example>"] == ("unsubscribe", "headers")
    assert kinds["<bounce-1@mx.example.net>"][0] == "bounce"
    with pipeline.app.sessions() as session:
        assert dict(session.execute(select(Suppression.email, Suppression.reason)).all()) == {oliver: "bounce", ANANYA: "unsubscribe"}
    assert enrollment_of(pipeline, oliver).phase == "stopped" and enrollment_of(pipeline, ANANYA).phase == "stopped"


def test_the_owners_answer_in_sent_is_a_contact_with_the_response_time_and_our_own_mail_never_counts(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    lead_reply = answer(intro, "Can you send the pricing?", message_id="<q@acme.example>")
    client = dovecot.client(PRIYA)
    try:
        client.append("INBOX", lead_reply, msg_time=START + dt.timedelta(hours=1))
        poll_all(pipeline.app)
        reply = message_from_bytes(lead_reply, policy=policy.default)
        own = answer(reply, "Here it is.", sender=f"Priya Sharma <{PRIYA}>", message_id="<own@appneural.example>", subject=f"Re: {intro['Subject']}")
        own = own.replace(f"To: {PRIYA}".encode(), f"To: {ANANYA}".encode(), 1)
        client.append("Sent", own, msg_time=START + dt.timedelta(hours=3, minutes=30))
    finally:
        client.logout()
    pipeline.clock.set(START + dt.timedelta(hours=4))
    results = poll_all(pipeline.app)
    assert results[PRIYA].recorded == {"own_reply": 1}, "the intro copy in Sent is ours and does not count"
    with pipeline.app.sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "owner-replied")).one()
        assert event.data["response_seconds"] == 2.5 * 3600
        assert session.scalars(select(Task.status).where(Task.step_key.like("answer:%"))).one() == "done"
        assert session.scalar(select(func.count()).select_from(InboundMail).where(InboundMail.kind == "reply")) == 1


def test_broken_mail_is_quarantined_or_read_and_the_poller_goes_on(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    no_id = answer(intro, "Sure, Thursday works.", message_id=None)
    bad_encoding = answer(intro, "x", message_id="<enc@acme.example>").replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: base64").replace(b"\nx\n", b"\n\xff\xfe!!not base64\n")
    big = EmailMessage()
    big["From"], big["To"], big["Subject"], big["Message-ID"] = f"Ananya <{ANANYA}>", PRIYA, f"Re: {intro['Subject']}", "<big@acme.example>"
    big["In-Reply-To"] = intro["Message-ID"]
    big.set_content("The signed contract is attached.")
    big.add_attachment(b"\0" * (20 * 1024 * 1024), maintype="application", subtype="pdf", filename="contract.pdf")
    nested = EmailMessage()
    nested["From"], nested["To"], nested["Subject"], nested["Message-ID"] = f"Ananya <{ANANYA}>", PRIYA, "nested", "<nested@acme.example>"
    nested["In-Reply-To"] = intro["Message-ID"]
    nested.set_content("outer")
    inner = EmailMessage()
    inner.set_content("inner")
    inner.add_alternative("<p>inner</p>", subtype="html")
    nested.add_attachment(inner)
    for raw in (no_id, bad_encoding, big.as_bytes(), nested.as_bytes()):
        dovecot.append(PRIYA, "INBOX", raw)
    results = poll_all(pipeline.app)
    assert results[PRIYA].recorded == {"reply": 4} and results[PRIYA].quarantined == 0
    rows = inbound(pipeline)
    assert len(rows) == 4 and all(r.lead_id is not None for r in rows)
    assert [r.key.startswith("digest:") for r in rows].count(True) == 1
    assert any(r.message_id == "<big@acme.example>" and "contract" in r.new_text for r in rows)
    assert poll_all(pipeline.app)[PRIYA].seen == 0


def test_uidvalidity_change_and_a_restarted_server_record_nothing_twice(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    dovecot.append(PRIYA, "INBOX", answer(intro, "First answer.", message_id="<a1@acme.example>"))
    poll_all(pipeline.app)
    with pipeline.app.sessions() as session:
        for row in session.scalars(select(FolderCursor).where(FolderCursor.folder == "INBOX")):
            row.uidvalidity += 1  # as after the server rebuilt its index
        session.commit()
    dovecot.restart()
    dovecot.append(PRIYA, "INBOX", answer(intro, "Second answer.", message_id="<a2@acme.example>"))
    results = poll_all(pipeline.app)
    assert results[PRIYA].resynced == ["INBOX"]
    assert [r.message_id for r in inbound(pipeline)] == ["<a1@acme.example>", "<a2@acme.example>"]


def test_a_server_that_hangs_is_a_temporary_failure_and_the_next_pass_reads_everything(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    cfg = pipeline.app.mailbox_config(PRIYA)
    assert cfg is not None and cfg.imap is not None
    hanging = cfg.imap.model_copy(update={"port": listener.getsockname()[1]})
    poller = MailboxPoller(pipeline.app, cfg, reader=FolderReader(hanging, timeout=1.0))
    with pytest.raises(TemporaryFailure):
        poller.poll()
    listener.close()
    for conn in accepted:
        conn.close()
    intro = sent_to(smtp_server, ANANYA)[0]
    dovecot.append(PRIYA, "INBOX", answer(intro, "Here now."))
    assert poll_all(pipeline.app)[PRIYA].recorded == {"reply": 1}



def test_a_message_that_breaks_processing_is_quarantined_and_the_rest_are_recorded(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach import poller

    intro = sent_to(smtp_server, ANANYA)[0]
    real = poller.act

    def act(app: Any, session: Any, row: Any, *args: Any, **kwargs: Any) -> None:
        if row.message_id == "<poison@acme.example>":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a decoder fault")
        real(app, session, row, *args, **kwargs)

    monkeypatch.setattr(poller, "act", act)
    dovecot.append(PRIYA, "INBOX", answer(intro, "First.", message_id="<poison@acme.example>"))
    dovecot.append(PRIYA, "INBOX", answer(intro, "Second.", message_id="<fine@acme.example>"))
    result = poll_all(pipeline.app)[PRIYA]
    assert result.quarantined == 1 and result.recorded["reply"] == 1
    rows = {r.message_id: r for r in inbound(pipeline)}
    assert rows["<poison@acme.example>"].kind == "quarantined" and "a decoder fault" in (rows["<poison@acme.example>"].error or "")
    assert rows["<fine@acme.example>"].kind == "reply"
    assert poll_all(pipeline.app)[PRIYA].seen == 0, "the cursor moved past both"


def test_mail_to_the_unsubscribe_address_and_a_meeting_acceptance_are_understood(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    mailto = str(intro["List-Unsubscribe"]).split("<mailto:")[1].split("?")[0]
    others = [r.recipients[0] for r in smtp_server.received if r.recipients[0] != ANANYA]
    opt_out = EmailMessage()
    opt_out["From"], opt_out["To"], opt_out["Subject"], opt_out["Message-ID"] = f"Someone <{others[0]}>", mailto, "unsubscribe", "<optout@example.org>"
    opt_out.set_content("")
    dovecot.append(mailto, "INBOX", opt_out.as_bytes())
    ics = "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nPRODID:-//Test//EN\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:meeting-1\r\nDTSTAMP:20261124T100000Z\r\nDTSTART:20261126T100000Z\r\nSUMMARY:Proposal call\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:ananya.rao@acme.example\r\nORGANIZER:mailto:priya@appneural.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    meeting = EmailMessage()
    meeting["From"], meeting["To"], meeting["Subject"], meeting["Message-ID"] = f"Ananya Rao <{ANANYA}>", PRIYA, "Accepted: Proposal call", "<accept@acme.example>"
    meeting["In-Reply-To"] = intro["Message-ID"]
    meeting.set_content("Ananya Rao has accepted this invitation.")
    meeting.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    dovecot.append(PRIYA, "INBOX", meeting.as_bytes())
    poll_all(pipeline.app)
    rows = {r.message_id: r for r in inbound(pipeline)}
    assert (rows["<optout@example.org>"].kind, rows["<optout@example.org>"].matched_by) == ("unsubscribe", "sender")
    assert rows["<accept@acme.example>"].kind == "reply" and rows["<accept@acme.example>"].evidence.get("meeting") == "accepted"
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Suppression.email)).all() == [others[0]]
        assert session.scalars(select(Event.data).where(Event.kind == "meeting")).one()["outcome"] == "meeting booked"


def dsn(intro: EmailMessage, n: int, status: str = "4.2.2") -> bytes:
    """A delivery status notification about our `intro` to Ananya: soft (4.x.x) or hard (5.x.x)."""
    code = "452 4.2.2 Mailbox full" if status.startswith("4") else f"550 {status} User unknown"
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {PRIYA}\r\nSubject: Delivery Status Notification (Failure)\r\n"
        f"Message-ID: <dsn-{n}@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="delivery-status"; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\nYour message to {ANANYA} could not be delivered.\r\n"
        f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {ANANYA}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {code}\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {intro['Message-ID']}\r\nTo: {ANANYA}\r\nSubject: {intro['Subject']}\r\n"
        "--b--\r\n"
    ).encode()


def test_soft_bounces_count_and_the_third_suppresses(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    for n in range(3):
        dovecot.append(PRIYA, "INBOX", dsn(intro, n))
        poll_all(pipeline.app)
        with pipeline.app.sessions() as session:
            suppressed = session.scalars(select(Suppression.email)).all()
        assert suppressed == ([ANANYA] if n == 2 else []), (n, [(r.kind, r.matched_by, r.evidence) for r in inbound(pipeline)])
    assert [r.evidence.get("hard") for r in inbound(pipeline)] == [False, False, False]
    assert enrollment_of(pipeline, ANANYA).phase == "stopped"


def test_a_soft_refusal_at_send_time_and_soft_bounce_reports_count_together(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    smtp_server.handler.set_faults(Faults(refuse_with={ANANYA: f"552 5.2.2 <{ANANYA}>: Mailbox full"}))
    statuses: list[str] = []
    for hours in range(6, 24 * 8, 6):  # until the next step is refused: the first soft bounce
        pipeline.run_until(START + dt.timedelta(hours=hours))
        with pipeline.app.sessions() as session:
            statuses = list(session.scalars(select(Message.status).where(Message.recipient == ANANYA).order_by(Message.id)))
        if "failed" in statuses:
            break
    assert statuses == ["sent", "failed"]
    for n in range(2):
        dovecot.append(PRIYA, "INBOX", dsn(intro, n))
        poll_all(pipeline.app)
        with pipeline.app.sessions() as session:
            assert session.scalars(select(Suppression.email)).all() == ([ANANYA] if n == 1 else []), n
    with pipeline.app.sessions() as session:
        lines = session.scalars(select(Event.key_points).where(Event.kind == "bounce", Event.data["inbound"].as_integer().is_not(None)).order_by(Event.id)).all()
    assert [line.rsplit("; ", 1)[-1] for line in lines] == ["soft bounce 2 of 3", "3 soft bounces in a row: the address is suppressed"]
    assert enrollment_of(pipeline, ANANYA).phase == "stopped"


def test_bounces_read_in_one_pass_count_in_their_order_and_suppress_once(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    intro = sent_to(smtp_server, ANANYA)[0]
    for n, status in enumerate(("4.2.2", "4.2.2", "4.2.2", "5.1.1", "5.1.1")):
        dovecot.append(PRIYA, "INBOX", dsn(intro, n, status))
    result = poll_all(pipeline.app)[PRIYA]
    assert result.recorded == {"bounce": 5} and result.quarantined == 0, "one chunk, one transaction: nothing set aside"
    rows = sorted(inbound(pipeline), key=lambda r: r.id)
    assert [r.evidence.get("status") for r in rows] == ["4.2.2", "4.2.2", "4.2.2", "5.1.1", "5.1.1"]
    with pipeline.app.sessions() as session:
        assert session.execute(select(Suppression.email, Suppression.reason)).all() == [(ANANYA, "bounce")]
        hard = [e.data["hard"] for e in session.scalars(select(Event).where(Event.kind == "bounce").order_by(Event.id))]
    assert hard == [False, False, True, True, True], "the third soft bounce counts as hard, as it would one pass at a time"


def test_a_chunk_whose_bodies_pass_the_budget_is_recorded_in_parts(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach import poller

    monkeypatch.setattr(poller, "BODY_BUDGET", 1)  # every body in a part of its own
    intro = sent_to(smtp_server, ANANYA)[0]
    other = next(r.recipients[0] for r in smtp_server.received if r.recipients[0] != ANANYA)
    to_other = sent_to(smtp_server, other)[0]
    owner = str(to_other["From"].addresses[0].addr_spec)
    news = b"From: News <news@lists.example.org>\r\nTo: " + PRIYA.encode() + b"\r\nSubject: Digest\r\nMessage-ID: <digest@lists.example.org>\r\n\r\nThe news.\r\n"
    dovecot.append(PRIYA, "INBOX", answer(intro, "First.", message_id="<part-1@acme.example>"))
    dovecot.append(PRIYA, "INBOX", news)
    dovecot.append(PRIYA, "INBOX", answer(intro, "Second.", message_id="<part-2@acme.example>"))
    dovecot.append(owner, "INBOX", answer(to_other, "Yes.", sender=f"<{other}>", message_id="<part-3@example.net>"))
    parts: list[tuple[str, str, int]] = []
    record = poller.MailboxPoller._record_chunk

    def spy(self: Any, mailbox_pk: int, folder: str, cursor: Any, chunk: Any, **kwargs: Any) -> Any:
        parts.append((self.address, folder, len(chunk.items)))
        return record(self, mailbox_pk, folder, cursor, chunk, **kwargs)

    monkeypatch.setattr(poller.MailboxPoller, "_record_chunk", spy)
    results = poll_all(pipeline.app)
    assert results[PRIYA].recorded == {"reply": 2}
    assert [n for box, folder, n in parts if (box, folder) == (PRIYA, "INBOX")] == [1, 1], "two bodies, two parts; the newsletter goes with one of them"
    assert {r.message_id for r in inbound(pipeline)} == {"<part-1@acme.example>", "<part-2@acme.example>", "<part-3@example.net>"}
    assert all(r.seen == 0 for r in poll_all(pipeline.app).values()), "the cursors moved past every part"


def test_a_server_lost_while_the_next_part_is_fetched_keeps_the_part_read_before(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach import poller

    monkeypatch.setattr(poller, "BODY_BUDGET", 1)  # every body in a part of its own
    intro = sent_to(smtp_server, ANANYA)[0]
    dovecot.append(PRIYA, "INBOX", answer(intro, "First.", message_id="<ahead-1@acme.example>"))
    dovecot.append(PRIYA, "INBOX", answer(intro, "Second.", message_id="<ahead-2@acme.example>"))
    cfg = pipeline.app.mailbox_config(PRIYA)
    assert cfg is not None
    box = MailboxPoller(pipeline.app, cfg)
    fetch, calls = box.reader.bodies, []

    def lost_on_the_second(uids: Any, limit: int) -> dict[int, bytes]:
        calls.append(box.reader.folder)
        if calls.count("INBOX") == 2:
            raise TemporaryFailure("IMAP FETCH bodies failed: connection reset")
        return fetch(uids, limit)

    try:
        monkeypatch.setattr(box.reader, "bodies", lost_on_the_second)
        with pytest.raises(TemporaryFailure):
            box.poll()
        assert [r.message_id for r in inbound(pipeline)] == ["<ahead-1@acme.example>"], "the part read before the failure is recorded"
        monkeypatch.setattr(box.reader, "bodies", fetch)
        assert box.poll().recorded == {"reply": 1}, "the next pass starts after it"
    finally:
        box.close()
    assert sorted(r.message_id for r in inbound(pipeline)) == ["<ahead-1@acme.example>", "<ahead-2@acme.example>"]


def test_the_watcher_reconnects_after_the_server_restarts_and_misses_nothing(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot) -> None:
    from outreach.poller import watch

    intro = sent_to(smtp_server, ANANYA)[0]
    cfg = pipeline.app.mailbox_config(PRIYA)
    assert cfg is not None
    stop = threading.Event()
    seen: list[int] = []
    watcher = threading.Thread(target=watch, args=(pipeline.app, cfg, stop), kwargs={"interval": 2, "on_result": lambda _, r: seen.append(r.seen)}, daemon=True)
    watcher.start()
    try:
        _wait(lambda: bool(seen))
        dovecot.restart()  # mid-poll: the watcher's connection (in IDLE) is cut
        dovecot.append(PRIYA, "INBOX", answer(intro, "Back online?", message_id="<after-restart@acme.example>"))
        _wait(lambda: any(r.message_id == "<after-restart@acme.example>" for r in inbound(pipeline)), timeout=30)
    finally:
        stop.set()
        watcher.join(20)
    assert not watcher.is_alive()
    assert [r.message_id for r in inbound(pipeline)] == ["<after-restart@acme.example>"]


def _wait(condition: Any, timeout: float = 15) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def report_on(sent: EmailMessage, n: int, status: str, reply: str) -> bytes:
    """A delivery status notification about one message we sent, with the receiving server's reply."""
    lead, owner = str(sent["To"].addresses[0].addr_spec), str(sent["From"].addresses[0].addr_spec)
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {owner}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <report-{n}@mx.example.net>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="delivery-status"; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\nYour message to {lead} could not be delivered.\r\n\r\n<{lead}>: host mx.example.net said: {reply}\r\n"
        f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {lead}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {reply}\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {sent['Message-ID']}\r\nTo: {lead}\r\nSubject: {sent['Subject']}\r\n"
        "--b--\r\n"
    ).encode()


def test_a_bounce_about_our_sending_keeps_the_lead_and_asks_the_owner_while_an_unknown_address_is_suppressed(pipeline: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, tmp_path: Path, database_url: str) -> None:
    from outreach.crm import finish_task
    from tests.cli_helpers import run

    intro = sent_to(smtp_server, ANANYA)[0]
    oliver = next(r.recipients[0] for r in smtp_server.received if r.recipients[0] != ANANYA)
    to_oliver = sent_to(smtp_server, oliver)[0]
    dovecot.append(PRIYA, "INBOX", report_on(intro, 1, "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org"))
    dovecot.append(str(to_oliver["From"].addresses[0].addr_spec), "INBOX", report_on(to_oliver, 2, "5.1.1", "550 5.1.1 <x>: Recipient address rejected: User unknown"))
    poll_all(pipeline.app)
    ananya, to_him = enrollment_of(pipeline, ANANYA), enrollment_of(pipeline, oliver)
    with pipeline.app.sessions() as session:
        assert session.scalars(select(Suppression.email)).all() == [oliver], "the unknown address is suppressed, the blocked lead is not"
        lines = {e.lead_id: e for e in session.scalars(select(Event).where(Event.kind == "bounce"))}
        tasks = session.scalars(select(Task).where(Task.step_key.like("bounce:%"))).all()
    assert [(t.lead_id, t.status, t.assignee_id is not None) for t in tasks] == [(ananya.lead_id, "open", True)]
    assert "blocked" in tasks[0].title and "spamhaus" in tasks[0].note
    assert (lines[ananya.lead_id].data["cause"], lines[ananya.lead_id].data["effect"]) == ("blocked", "task")
    assert "bounce (blocked)" in lines[ananya.lead_id].key_points
    assert lines[to_him.lead_id].data["cause"] == "userunknown"
    assert ananya.phase == "waiting", "nothing more goes to the lead until the owner has looked"
    assert enrollment_of(pipeline, oliver).phase == "stopped"
    status = run(tmp_path / "ws", "status", db=database_url)
    assert status.exit_code == 0, status.output
    assert "bounces by reason: blocked 1 · userunknown 1" in status.output or "bounces by reason: userunknown 1 · blocked 1" in status.output
    assert f"refused for reasons about the sender, to {PRIYA}: 1 blocked" in status.output
    report = run(tmp_path / "ws", "report", "--csv", str(tmp_path / "kpis.csv"), db=database_url)
    assert report.exit_code == 0 and "bounces by reason: " in report.output and "blocked 1" in report.output, report.output
    assert "bounces blocked,1," in (tmp_path / "kpis.csv").read_text()
    finish_task(pipeline.app, tasks[0].id, outcome="asked IT to delist our IP; called Ananya")
    assert enrollment_of(pipeline, ANANYA).phase == "active", "closing the task lets the sequence go on"
