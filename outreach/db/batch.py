"""Statements for batches of rows: keys handed out before the INSERT, and lookups of many values.

SQLAlchemy has to learn the key of every new row it inserts. When the keys are not known, it asks
the database for them (INSERT ... RETURNING, many rows to a statement): a long statement that the
driver rewrites on every execution. When they are set already, the rows go to the driver's
executemany, one short statement in pipeline mode. On PostgreSQL the keys come from the table's
own sequence, a batch in one query; elsewhere (SQLite, one writer) the database returns them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, insert, inspect, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def next_ids(session: Session, table: str, n: int) -> list[int]:
    """`n` new primary keys from a PostgreSQL table's own sequence, in one query, in ascending order."""
    return sorted(session.scalars(_NEXT_IDS, {"table": table, "n": n}))


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert plain rows (all with the same keys) and set each one's `id`."""
    if not rows:
        return
    if is_postgres(session):
        for row, key in zip(rows, next_ids(session, table.name, len(rows)), strict=True):
            row["id"] = key
        session.execute(insert(table), rows)
        return
    keys = session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).all()
    for row, key in zip(rows, keys, strict=True):
        row["id"] = key


def assign_ids(session: Session, objects: Iterable[object] | None = None) -> None:
    """Give new ORM objects (`objects`, else all the session's) their primary keys before a flush
    (PostgreSQL), in the order they were added, so that ids still follow the order of events; the
    unit of work then writes each table with one executemany."""
    if not is_postgres(session):
        return
    pending: dict[str, list[Any]] = {}
    for obj in session.new if objects is None else objects:
        state = inspect(obj)
        table = state.mapper.local_table
        if state.pending and "id" in table.c and getattr(obj, "id", None) is None:
            pending.setdefault(table.name, []).append(obj)
    with session.no_autoflush:
        for name, rows in pending.items():
            rows.sort(key=lambda obj: inspect(obj).insert_order)
            for obj, key in zip(rows, next_ids(session, name, len(rows)), strict=True):
                obj.id = key


def among(session: Session, column: InstrumentedAttribute[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(array)`: one parameter however many values,
    where an IN list is a parameter each for the driver to rewrite and the planner to read (half the
    time for a chunk's few hundred Message-IDs)."""
    values = list(values)
    if is_postgres(session):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
