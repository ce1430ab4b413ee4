"""Statements for batches of rows: keys handed out before the INSERT, and lookups of many values.

Keys first: so that a batch of new rows is written in one executemany.

SQLAlchemy's unit of work has to learn the key of every new row it inserts. When the keys are not
known, it asks the database for them (INSERT ... RETURNING, many rows to a statement): a long
statement that the driver rewrites on every execution. When they are set already, it hands the rows
to the driver's executemany, one short statement in pipeline mode. On PostgreSQL the keys come from
the table's own sequence, a batch in one query; elsewhere (SQLite, one writer) the rows keep the
usual path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam, inspect, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

_SEQUENCES: dict[str, str | None] = {}  # table -> the name of its id sequence (None: it has none)


def assign_ids(session: Session, objects: Iterable[object]) -> None:
    """Give the new ORM objects among `objects` that have no `id` yet one from their table's sequence,
    in the order they were added (so ids still follow the order of events)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    pending: dict[str, list[object]] = defaultdict(list)
    for obj in objects:
        state = inspect(obj)
        if state.pending and getattr(obj, "id", 0) is None and state.mapper.local_table.c.get("id") is not None:
            pending[state.mapper.local_table.name].append(obj)
    if not pending:
        return
    with session.no_autoflush:
        for table in pending.keys() - _SEQUENCES.keys():
            _SEQUENCES[table] = session.scalars(text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table}).one()
        pending = {table: rows for table, rows in pending.items() if _SEQUENCES[table] is not None}
        if not pending:
            return
        # one round trip for every table: (table's position, key), the keys of each in ascending order
        parts = [f"SELECT {n}, nextval(:seq{n}) FROM generate_series(1, :n{n})" for n in range(len(pending))]
        params = {k: v for n, (table, rows) in enumerate(pending.items()) for k, v in ((f"seq{n}", _SEQUENCES[table]), (f"n{n}", len(rows)))}
        keys: dict[int, list[int]] = defaultdict(list)
        for n, key in session.execute(text(" UNION ALL ".join(parts) + " ORDER BY 1, 2"), params):
            keys[n].append(key)
        for n, rows in enumerate(pending.values()):
            rows.sort(key=lambda obj: inspect(obj).insert_order)
            for obj, key in zip(rows, keys[n], strict=True):
                obj.id = key  # type: ignore[attr-defined]


def among(session: Session, column: InstrumentedAttribute[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(array)`: one parameter however many values,
    where an IN list is a parameter each for the driver to rewrite and the planner to read (half the
    time for a chunk's few hundred Message-IDs)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
