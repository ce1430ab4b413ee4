"""Redis and RabbitMQ brokers, several schedulers at once, the due-rows index, caps and spacing."""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, text

from outreach.db.models import Enrollment, Lead, Message, SequenceVersion
from outreach.scheduler import due_query, tick
from tests.pipeline import Pipeline, make_workspace
from tests.servers import Dovecot, SmtpServer

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def _pipeline(tmp_path: Path, smtp: SmtpServer, dovecot: Dovecot | None, url: str, broker: Any, **overrides: Any) -> Pipeline:
    workspace = make_workspace(tmp_path / "ws", smtp, dovecot, **overrides)
    if url.startswith("postgresql"):
        from tests.cli_helpers import run

        assert run(workspace, "db", "upgrade", db=url).exit_code == 0
    pipe = Pipeline(workspace, url, START, broker, threads=4)
    pipe.app.import_leads(workspace / "examples" / "leads.csv")
    pipe.app.enroll("bd-client-follow-up", None, all_leads=True, seed=3)
    pipe.prepare()
    return pipe


@pytest.mark.parametrize("broker_name", ["redis_broker", "rabbitmq_broker"])
def test_the_pipeline_runs_on_redis_and_rabbitmq(broker_name: str, request: pytest.FixtureRequest, tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, postgres_url: str) -> None:
    broker = request.getfixturevalue(broker_name)
    pipe = _pipeline(tmp_path, smtp_server, dovecot, postgres_url, broker)
    try:
        pipe.run_until(START + dt.timedelta(days=30))
    finally:
        pipe.close()
    ids = [r.message["Message-ID"] for r in smtp_server.received if not r.recipients[0].endswith("@appneural.example")]
    notices = [r.message["Message-ID"] for r in smtp_server.received if r.recipients[0].endswith("@appneural.example")]
    assert len(ids) == 48 and len(set(ids)) == 48  # 12 leads x 4 emails, each once
    assert len(notices) == 12 and len(set(notices)) == 12  # and each lead's escalation notice, once


def test_a_daily_cap_spreads_sending_over_days_and_loses_nothing(tmp_path: Path, smtp_server: SmtpServer, stub_broker: Any) -> None:
    pipe = _pipeline(tmp_path, smtp_server, None, f"sqlite:///{tmp_path / 'cap.sqlite'}", stub_broker, daily_cap=1, min_interval=600, jitter=120)
    try:
        pipe.run_until(START + dt.timedelta(days=90))
        with pipe.app.sessions() as session:
            outbox = {m.message_id: m.status for m in session.scalars(select(Message).where(Message.direction == "out", Message.kind != "draft"))}
            drafts = session.scalars(select(Message).where(Message.kind == "draft")).all()
    finally:
        pipe.close()
    per_day: dict[tuple[str, dt.date], int] = defaultdict(int)
    per_box: dict[str, list[dt.datetime]] = defaultdict(list)
    zones = {"priya@appneural.example": "Asia/Kolkata", "rahul@appneural.example": "Europe/London", "meera@appneural.example": "Asia/Kolkata", "support@appneural.example": "Asia/Kolkata"}
    for item in smtp_server.received:
        sent = parsedate_to_datetime(item.message["Date"])
        if not item.recipients[0].endswith("@appneural.example"):  # the cap is for mail to leads, not notices to the team
            per_day[(item.sender, sent.astimezone(ZoneInfo(zones[item.sender])).date())] += 1
        per_box[item.sender].append(sent)
    assert max(per_day.values()) == 1
    received = [item.message["Message-ID"] for item in smtp_server.received]
    assert len(received) == len(set(received)) >= 48  # the cadences, and the re-engagements after the revisits
    assert set(received) == set(outbox) and set(outbox.values()) == {"sent"}, "a capped message was lost"
    assert drafts and all(d.status == "failed" and "has no imap settings" in (d.error or "") for d in drafts), "without IMAP a draft has nowhere to go, and says so"
    for times in per_box.values():
        times.sort()
        assert all((b - a) >= dt.timedelta(seconds=600) for a, b in zip(times, times[1:]))


def test_spacing_between_messages_of_one_mailbox(tmp_path: Path, smtp_server: SmtpServer, stub_broker: Any) -> None:
    pipe = _pipeline(tmp_path, smtp_server, None, f"sqlite:///{tmp_path / 'spacing.sqlite'}", stub_broker, min_interval=300, jitter=60)
    try:
        pipe.run_until(START + dt.timedelta(days=1))
    finally:
        pipe.close()
    per_box: dict[str, list[dt.datetime]] = defaultdict(list)
    for item in smtp_server.received:
        per_box[item.sender].append(parsedate_to_datetime(item.message["Date"]))
    assert sum(len(v) for v in per_box.values()) == 12
    gaps = [b - a for times in per_box.values() for a, b in zip(sorted(times), sorted(times)[1:])]
    assert gaps and min(gaps) >= dt.timedelta(seconds=300)
    assert len({g.total_seconds() for g in gaps}) > 1  # jitter: no fixed rhythm


def _seed_enrollments(url: str, tmp_path: Path, smtp: SmtpServer, stub_broker: Any, total: int, due: int) -> Pipeline:
    pipe = _pipeline(tmp_path, smtp, None, url, stub_broker)
    with pipe.app.engine.begin() as conn:
        version = conn.execute(select(SequenceVersion.id).where(SequenceVersion.name == "bd-client-follow-up")).scalar_one()
        owner = conn.execute(select(Lead.owner_id).where(Lead.email == "ananya.rao@acme.example")).scalar_one()
        template = conn.execute(select(Enrollment.state).limit(1)).scalar_one()
        far = START + dt.timedelta(days=365)
        leads = [{"email": f"lead{i}@load.example", "first_name": "", "last_name": "", "company": "", "title": "", "phone": "", "timezone": "Asia/Kolkata", "country": "IN", "fields": {}, "owner_id": owner, "status": "Follow-Up", "created_at": START, "updated_at": START} for i in range(total)]
        conn.execute(insert(Lead), leads)
        ids = conn.execute(select(Lead.id).where(Lead.email.like("lead%@load.example")).order_by(Lead.id)).scalars().all()
        rows = [{"lead_id": lid, "sequence_id": version, "sequence_name": "bd-client-follow-up", "phase": "active", "state": {**template, "anchor_at": START.isoformat()}, "next_action_at": START if i < due else far, "seed": i, "enrolled_at": START, "updated_at": START} for i, lid in enumerate(ids)]
        conn.execute(insert(Enrollment), rows)
        conn.execute(text("UPDATE enrollment SET next_action_at = :far WHERE lead_id NOT IN (SELECT id FROM lead WHERE email LIKE 'lead%@load.example')"), {"far": far})
    return pipe


def test_several_schedulers_at_once_take_each_due_enrollment_once(tmp_path: Path, smtp_server: SmtpServer, stub_broker: Any, postgres_url: str) -> None:
    pipe = _seed_enrollments(postgres_url, tmp_path, smtp_server, stub_broker, total=400, due=400)
    results: list[Any] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        while (result := tick(pipe.app, now=START + dt.timedelta(hours=1), batch=50)).enrollments:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        taken = sum(r.enrollments for r in results)
        messages = [m for r in results for m in r.messages]
        assert taken == 400 and len(messages) == 400 and len(set(messages)) == 400
        with pipe.app.sessions() as session:
            assert session.scalar(select(Message.id).where(Message.step_key != "intro")) is None
    finally:
        pipe.close()


def test_the_due_query_uses_the_index_on_postgres(tmp_path: Path, smtp_server: SmtpServer, stub_broker: Any, postgres_url: str) -> None:
    pipe = _seed_enrollments(postgres_url, tmp_path, smtp_server, stub_broker, total=20_000, due=50)
    try:
        with pipe.app.engine.begin() as conn:
            conn.execute(text("ANALYZE enrollment"))
            query = due_query(START + dt.timedelta(minutes=1), 500, postgres=True)
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
        assert "ix_enrollment_due" in plan, plan
        assert "Seq Scan on enrollment" not in plan, plan
    finally:
        pipe.close()
