"""One factory for database engines and sessions; the schema is brought up by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, create_engine, event, insert, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from outreach.errors import ConfigError, Location, Problem

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # One writer at a time, decided at BEGIN: a read-check-write (a claim, a tick) cannot
            # interleave with another, which SQLite's default deferred transactions would allow.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, *, auto: bool) -> None:
    """Bring the schema to head (auto), or say how when it is behind."""
    if current_revision(engine) == head_revision(engine):
        return
    if auto:
        upgrade(engine)
        return
    raise ConfigError(
        Problem(Location("database"), "the database schema is not up to date; run `outreach db upgrade`")
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls everything back on any error."""
    with factory() as session, session.begin():
        yield session


_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def next_ids(session: Session, table: str, n: int) -> list[int]:
    """`n` new primary keys from a PostgreSQL table's own sequence, in one query, in ascending order."""
    return sorted(session.scalars(_NEXT_IDS, {"table": table, "n": n}))


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert plain rows (all with the same keys) and set each one's `id`.

    On PostgreSQL the keys come from the table's sequence first, so the rows go to the driver's
    executemany (one short statement, pipelined) rather than as INSERT ... RETURNING with every
    row in one long statement, which the driver rewrites on each execution. Elsewhere (SQLite)
    the database returns the keys.
    """
    if not rows:
        return
    if _postgres(session):
        for row, key in zip(rows, next_ids(session, table.name, len(rows)), strict=True):
            row["id"] = key
        session.execute(insert(table), rows)
        return
    keys = session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).all()
    for row, key in zip(rows, keys, strict=True):
        row["id"] = key


def assign_ids(session: Session) -> None:
    """Give the session's new ORM objects their primary keys before a flush (PostgreSQL), in the
    order they were added: the unit of work then writes them with executemany, as `insert_rows` does."""
    if not _postgres(session):
        return
    pending: dict[str, list[Any]] = {}
    for obj in session.new:
        state = inspect(obj)
        table = state.mapper.local_table
        if "id" in table.c and getattr(obj, "id", None) is None:
            pending.setdefault(table.name, []).append(obj)
    with session.no_autoflush:
        for name, objects in pending.items():
            objects.sort(key=lambda obj: inspect(obj).insert_order)
            for obj, key in zip(objects, next_ids(session, name, len(objects)), strict=True):
                obj.id = key
