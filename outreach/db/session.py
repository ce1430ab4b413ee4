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
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from outreach.errors import ConfigError, Location, Problem

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
POOL_SIZE = 16  # connections kept open: as many as a process's busiest set of threads
POOL_OVERFLOW = 16  # more, opened for a burst and closed after it


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
    # a connection a thread: a worker's threads each commit every message, and a pool smaller than
    # them opens and closes a server connection for every transaction beyond its size
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, **kwargs}
    return create_engine(url, **options)


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
