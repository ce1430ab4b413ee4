"""The three promises, one fault at a time: exactly once (each outcome durable before the next
message of a batch goes), in order (a step waits for its predecessor to go out), never after an
answer (whatever the enrollment's phase), and a broker outage costing one round, not minutes."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import Enrollment, InboundMail, Message
from outreach.db.session import transaction
from outreach.delivery import Outcome, deliver, deliver_many
from outreach.scheduler import relay, tick
from tests.pipeline import Pipeline, kill_when, pipeline_with_leads
from tests.servers import Dovecot, Faults, Received, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday 10:30 in India, inside the window
ROOT = Path(__file__).resolve().parents[2]
BD = "bd-client-follow-up"

BATCH_WORKER = """
import datetime as dt, json, sys
from pathlib import Path
from outreach.clock import FakeClock
from outreach.config import load_settings
from outreach.delivery import deliver_many
from outreach.service import App
workspace, url, pks, when = sys.argv[1:5]
now = dt.datetime.fromisoformat(when)
app = App(load_settings(Path(workspace), {"OUTREACH_DATABASE_URL": url, "OUTREACH_SECRET_KEY": "test-signing-key"}), FakeClock(now), migrate=False)
deliver_many(app, json.loads(pks), now=now)
"""


@pytest.fixture
def pipe(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, database_url: str, stub_broker: Any) -> Any:
    pipeline = pipeline_with_leads(tmp_path / "ws", smtp_server, dovecot, database_url, START, stub_broker)
    yield pipeline
    pipeline.close()


def _statuses(pipe: Pipeline, pks: list[int]) -> dict[int, str]:
    with pipe.app.sessions() as session:
        return {m.id: m.status for m in session.scalars(select(Message).where(Message.id.in_(pks)))}


def _message_ids(pipe: Pipeline, pks: list[int]) -> dict[int, str]:
    with pipe.app.sessions() as session:
        return {m.id: m.message_id or "" for m in session.scalars(select(Message).where(Message.id.in_(pks)))}


def test_a_worker_killed_mid_batch_has_recorded_each_accepted_message_and_nothing_goes_twice(pipe: Pipeline, smtp_server: SmtpServer, database_url: str) -> None:
    pipe.app.enroll(BD, None, all_leads=True, seed=3)
    pipe.prepare()
    tick(pipe.app, now=START)
    batches: list[list[int]] = []
    relay(pipe.app, batches.append, now=START)
    batch = max(batches, key=len)
    assert len(batch) >= 3, "a batch of one mailbox's intros"
    # a server that takes its time, as real ones do: the worker dies while the third message is in DATA
    third = threading.Event()

    def accepted(_: Received) -> None:
        if len(smtp_server.received) == 2:
            third.set()

    smtp_server.handler.set_faults(Faults(hang_data=0.5, on_accept=accepted))
    kill_when(BATCH_WORKER, [str(pipe.app.settings.root), database_url, str(batch), START.isoformat()], third)
    smtp_server.handler.set_faults(Faults())
    ids = _message_ids(pipe, batch)
    accepted_ids = {r.message["Message-ID"] for r in smtp_server.received}
    statuses = _statuses(pipe, batch)
    assert len(accepted_ids) == 2
    # each accepted message was recorded before the next one went: the database says what the server has
    assert {pk for pk, status in statuses.items() if status == "sent"} == {pk for pk, mid in ids.items() if mid in accepted_ids}
    assert {status for pk, status in statuses.items() if ids[pk] not in accepted_ids} == {"sending"}
    # once the lease has run out, the rest goes, and nothing goes twice
    pipe.clock.set(START + dt.timedelta(seconds=pipe.app.settings.workspace.send_lease + 1))
    relay(pipe.app, batches.append, now=pipe.clock.now())
    deliver_many(pipe.app, batches[-1], now=pipe.clock.now())
    received = [r.message["Message-ID"] for r in smtp_server.received]
    assert sorted(received) == sorted(ids.values())
    assert set(_statuses(pipe, batch).values()) == {"sent"}


def test_a_late_intro_moves_its_follow_up_and_the_follow_up_never_goes_first(pipe: Pipeline, smtp_server: SmtpServer) -> None:
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    planned = tick(pipe.app, now=START)  # handed to the outbox; the broker is away for a day
    assert len(planned.messages) == 1
    late = START + dt.timedelta(days=1)
    for day in range(2, 5):  # the scheduler goes on meanwhile: nothing may overtake the intro
        tick(pipe.app, now=START + dt.timedelta(days=day) - dt.timedelta(hours=23))
    assert _statuses(pipe, planned.messages) == {planned.messages[0]: "planned"}
    pipe.clock.set(late)
    pipe.run_until(START + dt.timedelta(days=8))
    with pipe.app.sessions() as session:
        sent = list(session.scalars(select(Message).where(Message.recipient == "ananya.rao@acme.example", Message.status == "sent").order_by(Message.sent_at)))
    assert [m.step_key for m in sent][:2] == ["intro", "proposal-check"]
    intro, check = sent[0], sent[1]
    assert intro.sent_at is not None and check.sent_at is not None
    # `at: 2-3 days` counts from when the intro went out, not from when it was planned
    assert check.sent_at - intro.sent_at >= dt.timedelta(days=2)
    order = [r.message["Message-ID"] for r in smtp_server.received if r.recipients == ["ananya.rao@acme.example"]]
    assert order[:2] == [intro.message_id, check.message_id]


def _record_answer(pipe: Pipeline, email: str, kind: str, at: dt.datetime) -> None:
    with transaction(pipe.app.sessions) as session:
        lead = pipe.app.lead(session, email)
        session.add(InboundMail(key=f"<{kind}-{at.timestamp()}@lead.example>", kind=kind, lead_id=lead.id, sender=email, received_at=at, seen_at=at))


@pytest.mark.parametrize("kind", ["reply", "unsubscribe"])
def test_an_answer_recorded_for_the_lead_cancels_the_email_whatever_the_enrollments_phase(pipe: Pipeline, smtp_server: SmtpServer, kind: str) -> None:
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    planned = tick(pipe.app, now=START)
    pk = planned.messages[0]
    # recorded elsewhere (an answer in another enrollment's thread, a phase the engine does not stop from)
    _record_answer(pipe, "ananya.rao@acme.example", kind, START + dt.timedelta(minutes=1))
    with transaction(pipe.app.sessions) as session:
        enrollment = session.scalars(select(Enrollment)).one()
        enrollment.phase = "completed"
    assert deliver(pipe.app, pk, now=START + dt.timedelta(minutes=2)) is Outcome.CANCELLED
    assert smtp_server.received == []


def test_an_answer_before_the_enrollment_began_holds_nothing(pipe: Pipeline, smtp_server: SmtpServer) -> None:
    _record_answer(pipe, "ananya.rao@acme.example", "reply", START - dt.timedelta(days=60))  # a conversation long over
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    planned = tick(pipe.app, now=START)
    assert deliver(pipe.app, planned.messages[0], now=START) is Outcome.SENT


def test_a_retried_first_email_checks_for_an_answer_too(pipe: Pipeline, smtp_server: SmtpServer) -> None:
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    pk = tick(pipe.app, now=START).messages[0]
    smtp_server.handler.set_faults(Faults(temp_fail_share=1.0))
    assert deliver(pipe.app, pk, now=START) is Outcome.RETRY
    _record_answer(pipe, "ananya.rao@acme.example", "reply", START + dt.timedelta(seconds=5))
    smtp_server.handler.set_faults(Faults())
    assert deliver(pipe.app, pk, now=START + dt.timedelta(hours=1)) is Outcome.CANCELLED
    assert smtp_server.received == []


def test_a_paused_enrollment_holds_its_email_until_the_pause_ends(pipe: Pipeline, smtp_server: SmtpServer) -> None:
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    pk = tick(pipe.app, now=START).messages[0]
    back = START + dt.timedelta(days=3)
    from outreach.sequences import engine as eng

    pipe.app.apply("ananya.rao@acme.example", None, lambda at: eng.PauseRequested(at=at, until=back), "paused")
    assert deliver(pipe.app, pk, now=START + dt.timedelta(minutes=1)) is Outcome.DEFERRED
    with pipe.app.sessions() as session:
        message = session.get(Message, pk)
        assert message is not None and message.status == "planned" and message.not_before is not None and message.not_before >= back
    assert smtp_server.received == []
    pipe.run_until(back + dt.timedelta(days=1))
    assert smtp_server.received[0].message["Message-ID"] == _message_ids(pipe, [pk])[pk]
    with pipe.app.sessions() as session:
        sent_at = session.get(Message, pk).sent_at  # type: ignore[union-attr]
        assert sent_at is not None and sent_at >= back


def test_the_broker_away_costs_a_round_not_minutes(pipe: Pipeline) -> None:
    pipe.app.enroll(BD, None, all_leads=True, seed=3)
    pipe.prepare()
    planned = tick(pipe.app, now=START)

    def away(_: list[int]) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    assert relay(pipe.app, away, now=START) == []
    handed: list[list[int]] = []
    assert sorted(relay(pipe.app, handed.append, now=START + dt.timedelta(seconds=5))) == sorted(planned.messages)
    assert relay(pipe.app, handed.append, now=START + dt.timedelta(seconds=10)) == []  # with the broker now


def _database_away(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The next `times` records of an outcome meet a database that is away; how many did."""
    import sqlalchemy.exc

    from outreach import delivery

    met: list[int] = []

    def away(real: Any) -> Any:
        def flaky(*args: Any, **kwargs: Any) -> Outcome:
            if len(met) < times:
                met.append(1)
                raise sqlalchemy.exc.OperationalError("UPDATE message", {}, ConnectionRefusedError(111, "Connection refused"))
            return real(*args, **kwargs)

        return flaky

    # the two ways an outcome is recorded (PostgreSQL's one statement for a message sent, and a transaction)
    monkeypatch.setattr(delivery, "_record_once", away(delivery._record_once))
    monkeypatch.setattr(delivery, "_record_sent_at_once", away(delivery._record_sent_at_once))
    monkeypatch.setattr(delivery, "RECORD_RETRIES", (0.01, 0.01))
    return met


def test_a_database_restart_while_recording_is_waited_for(pipe: Pipeline, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    pk = tick(pipe.app, now=START).messages[0]
    met = _database_away(monkeypatch, 2)
    assert deliver(pipe.app, pk, now=START) is Outcome.SENT
    assert len(met) == 2 and len(smtp_server.received) == 1
    assert _statuses(pipe, [pk]) == {pk: "sent"}


def test_a_database_that_stays_away_leaves_the_copy_in_sent_so_recovery_does_not_send_again(pipe: Pipeline, smtp_server: SmtpServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy.exc

    pipe.app.enroll(BD, ["ananya.rao@acme.example"], seed=5)
    pipe.prepare()
    pk = tick(pipe.app, now=START).messages[0]
    _database_away(monkeypatch, 3)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        deliver(pipe.app, pk, now=START)
    assert len(smtp_server.received) == 1 and _statuses(pipe, [pk]) == {pk: "sending"}
    later = START + dt.timedelta(seconds=pipe.app.settings.workspace.send_lease + 1)
    assert deliver(pipe.app, pk, now=later) is Outcome.SENT  # found in Sent: recorded, not sent again
    assert len(smtp_server.received) == 1
