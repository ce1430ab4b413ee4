"""Batches of rows on both databases: keys handed out before the flush follow the order the rows
were added, the flush then writes each table in one executemany (PostgreSQL), and a lookup of many
values finds what an IN list finds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from outreach.db.batch import among, assign_ids, insert_rows
from outreach.db.models import Event, Lead
from outreach.db.session import make_engine, session_factory, upgrade

AT = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    upgrade(engine)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def _lead(email: str, **fields: Any) -> Lead:
    return Lead(email=email, created_at=AT, updated_at=AT, **fields)


def _statements(session: Session) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        seen.append((statement.split("(")[0].strip(), executemany))

    event.listen(session.get_bind(), "before_cursor_execute", note)
    return seen


def test_new_rows_get_keys_in_the_order_they_were_added_and_one_insert_a_table(session: Session) -> None:
    lead = _lead("asha@client.example", first_name="Asha")
    session.add(lead)
    session.flush()
    events = [Event(lead_id=lead.id, at=AT + dt.timedelta(minutes=n), kind="reply", key_points=f"answer {n}", data={"n": n}) for n in range(30)]
    session.add_all(events)
    statements = _statements(session)
    assign_ids(session)
    session.flush()
    keys = [e.id for e in events]
    assert all(key is not None for key in keys) and keys == sorted(keys) and len(set(keys)) == 30
    inserts = [many for statement, many in statements if statement.startswith("INSERT INTO event")]
    if session.get_bind().dialect.name == "postgresql":
        assert inserts == [True]  # one executemany, no RETURNING
    session.commit()
    stored = session.scalars(select(Event.key_points).where(Event.lead_id == lead.id).order_by(Event.id)).all()
    assert stored == [f"answer {n}" for n in range(30)]


def test_assign_ids_leaves_rows_that_have_a_key_and_rows_already_stored(session: Session) -> None:
    lead = _lead("ravi@client.example")
    session.add(lead)
    session.flush()
    kept = lead.id
    assign_ids(session, [lead])
    assert lead.id == kept
    assign_ids(session)  # nothing new: no query, no error
    session.commit()


def test_insert_rows_sets_each_rows_key(session: Session) -> None:
    rows = [{"at": AT, "kind": "note", "key_points": f"line {n}", "data": {}} for n in range(5)]
    insert_rows(session, Event.__table__, rows)
    session.commit()
    stored = {key: text for key, text in session.execute(select(Event.id, Event.key_points))}
    assert {row["id"]: row["key_points"] for row in rows} == stored


def test_among_finds_what_an_in_list_finds(session: Session) -> None:
    session.add_all(_lead(f"lead{n}@client.example") for n in range(50))
    session.commit()
    wanted = {f"lead{n}@client.example" for n in range(0, 80, 3)}
    found = set(session.scalars(select(Lead.email).where(among(session, Lead.email, wanted))))
    assert found == set(session.scalars(select(Lead.email).where(Lead.email.in_(wanted)))) == {f"lead{n}@client.example" for n in range(0, 50, 3)}
    assert set(session.scalars(select(Lead.email).where(among(session, Lead.email, [])))) == set()
