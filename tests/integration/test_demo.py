"""`outreach demo`: sixty simulated days of the real pipeline, and each simulated person ends where
their behaviour should take them; every email is delivered exactly once; the same seed, the same story."""

from __future__ import annotations

import datetime as dt
import mailbox
import shutil
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from outreach.db.models import Enrollment, Event, InboundMail, Lead, Message, Suppression
from outreach.db.session import make_engine
from outreach.demo import CAST, DAYS, Behaviour, DemoResult, Persona, run_demo
from outreach.demo.localmail import CATCH_ALL
from tests.cli_helpers import run
from workers.inprocess import InProcess

ROOT = Path(__file__).resolve().parents[2]
BD = "bd-client-follow-up"
SEED = 7
SHORT = 12  # days of the CLI run, whose story must be the start of the long one


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(ROOT, senders=InProcess, seed=SEED, directory=tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def engine(played: DemoResult) -> Iterator[Engine]:
    engine = make_engine(played.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped workspace, run through the command line for a shorter time."""
    workspace = tmp_path_factory.mktemp("workspace")
    for name in ("sequences", "templates", "examples"):
        shutil.copytree(ROOT / name, workspace / name)
    shutil.copy(ROOT / "outreach.yaml", workspace / "outreach.yaml")
    return workspace


@pytest.fixture(scope="module")
def cli_output(cli_workspace: Path) -> str:
    result = run(cli_workspace, "demo", "--seed", str(SEED), "--days", str(SHORT))
    assert result.exit_code == 0, result.output
    return result.output


def personas(behaviour: Behaviour, sequence: str = BD) -> list[Persona]:
    found = [p for p in CAST if p.behaviour is behaviour and p.sequence == sequence]
    assert found, f"the cast has no {behaviour} in {sequence}"
    return found


def enrollment(session: Session, email: str, sequence: str = BD) -> Enrollment:
    return session.scalars(select(Enrollment).join(Lead).where(Lead.email == email, Enrollment.sequence_name == sequence)).one()


def kinds(session: Session, email: str) -> list[str]:
    return list(session.scalars(select(Event.kind).join(Lead, Event.lead_id == Lead.id).where(Lead.email == email).order_by(Event.at, Event.id)))


def sent_to(session: Session, email: str) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.recipient == email, Message.direction == "out", Message.status == "sent").order_by(Message.sent_at)))


def first(session: Session, email: str, kind: str) -> Event:
    return session.scalars(select(Event).join(Lead, Event.lead_id == Lead.id).where(Lead.email == email, Event.kind == kind).order_by(Event.at)).first()  # type: ignore[return-value]


def message_ids(folder: mailbox.Maildir) -> Counter[str]:
    return Counter(str(message_from_bytes(folder.get_bytes(key))["Message-ID"]) for key in folder.iterkeys())


def test_the_run_played_sixty_days_to_the_end(played: DemoResult) -> None:
    assert played.finished
    assert played.end - played.start == dt.timedelta(days=DAYS)
    assert played.database.is_file() and (played.directory / "outreach.yaml").is_file()
    assert {lead.email for lead in played.leads} == {p.email for p in CAST}


def test_leads_who_reply_stop_their_sequence_with_a_reply_on_record(played: DemoResult, engine: Engine) -> None:
    with Session(engine) as session:
        for persona in personas(Behaviour.REPLY):
            assert enrollment(session, persona.email).phase == "stopped"
            assert "reply" in kinds(session, persona.email)
            assert played.lead(persona.email).status == "Active"
            assert played.lead(persona.email).emails == persona.after_email, "answered after the email they read"
        checked_in = personas(Behaviour.REPLY, "support-check-in")[0]
        assert "reply" in kinds(session, checked_in.email)
        assert enrollment(session, checked_in.email, "support-check-in").phase == "active", "check-ins go on after a reply (on_reply: continue)"


def test_the_out_of_office_pauses_until_the_return_date_then_the_reply_stops(played: DemoResult, engine: Engine) -> None:
    [away] = personas(Behaviour.OUT_OF_OFFICE)
    with Session(engine) as session:
        assert kinds(session, away.email)[:4] == ["enrolled", "email-sent", "auto-reply", "resumed"]
        notice = first(session, away.email, "auto-reply")
        back = dt.date.fromisoformat(notice.data["until"])
        resumed = first(session, away.email, "resumed").at
        emails = [m.sent_at for m in sent_to(session, away.email)]
        assert all(at <= notice.at or at >= resumed for at in emails), "nothing was sent while away"
        assert resumed.date() >= back
        assert first(session, away.email, "reply").at > resumed
        assert enrollment(session, away.email).phase == "stopped"
    assert played.lead(away.email).status == "Active"


def test_the_bounced_address_and_the_opt_out_are_suppressed(played: DemoResult, engine: Engine) -> None:
    [bounced] = personas(Behaviour.BOUNCE)
    [opted_out] = personas(Behaviour.OPT_OUT)
    with Session(engine) as session:
        suppressed = {email: reason for email, reason in session.execute(select(Suppression.email, Suppression.reason))}
        assert suppressed == {bounced.email: "bounce", opted_out.email: "unsubscribe"}
        report = session.scalars(select(InboundMail).where(InboundMail.kind == "bounce")).one()
        assert report.sender.startswith("mailer-daemon@") and report.matched_by == "bounce-report", "matched by the returned headers"
        for email in (bounced.email, opted_out.email):
            assert enrollment(session, email).phase == "stopped"
    assert played.lead(bounced.email).emails == 1 and played.lead(bounced.email).status == "Closed"
    assert played.lead(opted_out.email).status == "Closed"


def test_the_meeting_acceptance_is_a_reply_and_a_meeting(played: DemoResult, engine: Engine) -> None:
    [meets] = personas(Behaviour.MEETING)
    with Session(engine) as session:
        assert {"reply", "meeting"} <= set(kinds(session, meets.email))
        assert enrollment(session, meets.email).phase == "stopped"
    assert played.lead(meets.email).status == "Active"
    assert {kpi.name: kpi.value for kpi in played.report.kpis}["meeting conversion"]


def test_silent_leads_are_escalated_then_dormant_until_a_revisit_or_revisited(played: DemoResult, engine: Engine) -> None:
    revisited = 0
    with Session(engine) as session:
        for persona in personas(Behaviour.SILENT):
            record = kinds(session, persona.email)
            assert record.index("escalated") < record.index("dormant")
            bd = enrollment(session, persona.email)
            if "revisit" in record:
                revisited += 1
                assert bd.phase == "completed"
                assert enrollment(session, persona.email, "re-engagement").phase == "active"
                assert played.lead(persona.email).status == "Follow-Up"
            else:
                assert bd.phase == "dormant" and bd.next_action_at is not None and bd.next_action_at > played.end
                assert played.lead(persona.email).status == "Dormant"
    assert revisited, "sixty days reach the first revisits"


def test_every_email_reached_its_mailbox_exactly_once(played: DemoResult, engine: Engine) -> None:
    root = played.maildir
    catch_all = message_ids(mailbox.Maildir(root / CATCH_ALL, create=False))
    with Session(engine) as session:
        sent = list(session.scalars(select(Message).where(Message.direction == "out", Message.status == "sent")))
        team = {address for address in played.mailboxes}
        to_leads = [m for m in sent if m.recipient not in team]
        assert to_leads and all(catch_all[m.message_id] == 1 for m in to_leads)
        for message in sent:
            box = mailbox.Maildir(root / message.sender, create=False)
            assert message_ids(box.get_folder("Sent"))[message.message_id] == 1, "one copy in Sent"
            if message.recipient in team:
                assert message_ids(mailbox.Maildir(root / message.recipient, create=False))[message.message_id] == 1
        for draft in session.scalars(select(Message).where(Message.status == "drafted")):
            assert message_ids(mailbox.Maildir(root / draft.sender, create=False).get_folder("Drafts"))[draft.message_id] == 1, "left in Drafts, not sent"
            assert catch_all[draft.message_id] == 0
    answers = Counter[str]()
    for address in played.mailboxes:
        answers += message_ids(mailbox.Maildir(root / address, create=False).get_folder("Sent"))
    ours = {m.message_id for m in to_leads}
    assert set(catch_all) - ours <= set(answers), "the rest are the owners' own answers, filed in their Sent"


def test_no_follow_up_after_an_answer(engine: Engine) -> None:
    answering = [p for p in CAST if p.sequence == BD and p.behaviour in (Behaviour.REPLY, Behaviour.OPT_OUT, Behaviour.MEETING, Behaviour.OUT_OF_OFFICE)]
    with Session(engine) as session:
        for persona in answering:
            answered = first(session, persona.email, "unsubscribe" if persona.behaviour is Behaviour.OPT_OUT else "reply").at
            assert all(m.sent_at < answered for m in sent_to(session, persona.email))


def test_people_answer_hours_later_and_owners_answer_the_replies(played: DemoResult, engine: Engine) -> None:
    with Session(engine) as session:
        for mail in session.scalars(select(InboundMail).where(InboundMail.kind.in_(("reply", "unsubscribe")))):
            answered = session.scalars(select(Message).where(Message.recipient == mail.sender, Message.status == "sent", Message.sent_at < mail.received_at).order_by(Message.sent_at.desc())).first()
            assert answered is not None and mail.received_at - answered.sent_at >= dt.timedelta(hours=1)
        replied = session.scalars(select(InboundMail.lead_id).where(InboundMail.kind == "reply")).all()
        answered_by_owner = session.scalars(select(InboundMail.lead_id).where(InboundMail.kind == "own_reply")).all()
        assert sorted(replied) == sorted(answered_by_owner)
    response = {kpi.name: kpi for kpi in played.report.kpis}["response time"]
    assert response.value is not None and response.met


def test_the_command_line_tells_the_story_and_where_to_look(cli_output: str, cli_workspace: Path) -> None:
    for expected in (
        "outreach demo: 12 days of the real pipeline",
        "Mon 02 Mar  ✉ 12 emails: intro ×10",
        "bounce",
        "out of office",
        "After 12 days",
        "follow-up success rate",
        "meeting conversion",
        f"OUTREACH_DATABASE_URL=sqlite:///{cli_workspace / 'var' / 'demo' / 'outreach.sqlite'} outreach status",
        "`outreach run`",
    ):
        assert expected in cli_output


def test_the_same_seed_tells_the_same_story(played: DemoResult, cli_output: str, cli_workspace: Path) -> None:
    """The command-line run played the first days of the long run: the record of those days is the same."""
    cut = played.start + dt.timedelta(days=SHORT) - dt.timedelta(hours=1)

    def story(url: str) -> Counter[tuple[str | None, str, str]]:
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                rows = session.execute(select(Lead.email, Event.kind, Event.at).outerjoin(Lead, Event.lead_id == Lead.id).where(Event.at < cut))
                # to the hour: a round's time follows the mailboxes' spacing, whose jitter is drawn per
                # Message-ID (new in each run), so an answer can be read a round, minutes, apart
                return Counter((email, kind, f"{at:%Y-%m-%d %H}") for email, kind, at in rows)
        finally:
            engine.dispose()

    assert story(f"sqlite:///{cli_workspace / 'var' / 'demo' / 'outreach.sqlite'}") == story(played.database_url)
