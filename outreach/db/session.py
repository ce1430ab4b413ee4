"""One factory for database engines and sessions; the schema is brought up by Alembic; the
database's failures, translated once for a command that meets them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from outreach.errors import ConfigError, Location, Problem, Unavailable

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
POOL_SIZE = 16  # connections kept open: as many as a process's busiest set of threads
POOL_OVERFLOW = 16  # more, opened for a burst and closed after it
# seconds to reach a PostgreSQL server and finish its handshake; one that accepts the connection
# and never answers would otherwise hold a command for minutes (the URL may set its own)
CONNECT_TIMEOUT = 5


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # SQLite then cannot open the file, and says so at the first connection
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
    if "connect_timeout" not in make_url(url).query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT, **options.get("connect_args", {})}
    return create_engine(url, **options)


@contextmanager
def database_errors(url: str, setting: str) -> Iterator[None]:
    """The database being unreachable or unreadable, as one line that names the setting (`setting`:
    OUTREACH_DATABASE_URL, or database_url's place in outreach.yaml) and the fix. Anything else
    (a constraint, a defect) passes through as it is."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, exc.DatabaseError) as error:
        problem = _cannot_use(url, setting, error)
        if problem is None:
            raise
        raise problem from error


def _cannot_use(url: str, setting: str, error: exc.DBAPIError) -> ConfigError | Unavailable | None:
    reason = _first_line(error.orig if error.orig is not None else error)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ":memory:"
        if isinstance(error, exc.OperationalError) and "unable to open" in reason:
            return ConfigError(Problem(Location(setting), f"cannot open the SQLite file {path} ({reason}); check that its folder exists and can be written, or correct the path"))
        if type(error) is exc.DatabaseError:  # "file is not a database": the driver's base error, only for this
            return ConfigError(Problem(Location(setting), f"{path} is not an SQLite database ({reason}); restore it from a backup, move it away to start afresh, or correct the path"))
        if isinstance(error, exc.OperationalError):
            return Unavailable(f"{setting}: the SQLite file {path} failed ({reason})")
        return None
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return Unavailable(f"{setting}: cannot use the database at {where} ({reason}); start it or make it reachable, or correct the URL")
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]


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
