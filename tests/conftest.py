from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from outreach.mail import intake
    from tests.servers import Dovecot, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
UTC = dt.UTC

PG_URL = os.environ.get("OUTREACH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SETUP = "sudo bash scripts/test-services installs and starts the test servers (make test runs it first)"


def missing_server(reason: str) -> NoReturn:
    """A test whose server is missing fails, saying what is missing and how to provide it: a skip
    would report a green run in which that test never ran."""
    pytest.fail(f"{reason}; {SETUP}", pytrace=False)


def _where(url: str) -> str:
    """Host and port of a server's URL, without the credentials it may carry."""
    return urlsplit(url).netloc.rpartition("@")[2]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the shipped workspace (outreach.yaml, sequences, templates, examples) to change freely."""
    for name in ("sequences", "templates", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name)
    text = (ROOT / "outreach.yaml").read_text()
    (tmp_path / "outreach.yaml").write_text(text)
    return tmp_path


def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"outreach_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        problem = " ".join(str(exc).split())
    else:
        problem = ""
    if problem:
        missing_server(f"PostgreSQL is not reachable at {_where(PG_URL)} (OUTREACH_TEST_POSTGRES): {problem}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server."""
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outreach.sqlite'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    from tests.servers import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def dovecot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    """A real Dovecot with the four shipped mailboxes as users."""
    from tests.pipeline import MAILBOXES, PASSWORD, PASSWORD_ENV
    from tests.servers import Dovecot

    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        missing_server("Dovecot is not installed (sudo apt-get install -y dovecot-imapd)")
    if os.geteuid() != 0:
        missing_server("Dovecot is started as root, to serve mail as the dovecot user: run the tests as root (sudo make test)")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = Dovecot({box: PASSWORD for box in MAILBOXES}).start()
    yield server
    server.stop()


@pytest.fixture
def start_readers() -> Iterator[Callable[[int], intake.Readers]]:
    """Reading workers, as many as asked, started (the classifier imported) and closed after the test."""
    from outreach.mail import intake

    started: list[intake.Readers] = []

    def start(workers: int) -> intake.Readers:
        readers = intake.Readers(workers=workers)
        readers.start()
        started.append(readers)
        return readers

    yield start
    for readers in started:
        readers.close()


@pytest.fixture
def stub_broker() -> Iterator[Any]:
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    yield broker
    broker.flush_all()
    broker.close()


def _service(name: str, variable: str, url: str, connect: Callable[[], object], errors: type[Exception]) -> None:
    try:
        connect()
    except errors as exc:
        problem = str(exc) or type(exc).__name__
    else:
        return
    missing_server(f"{name} is not reachable at {_where(url)} ({variable}): {problem}")


@pytest.fixture
def redis_broker() -> Iterator[Any]:
    """The machine's Redis as a Dramatiq broker, in a namespace of its own."""
    import redis
    from dramatiq.brokers.redis import RedisBroker

    url = os.environ.get("OUTREACH_TEST_REDIS", "redis://127.0.0.1:6379/0")
    _service("Redis", "OUTREACH_TEST_REDIS", url, lambda: redis.Redis.from_url(url, socket_connect_timeout=3).ping(), redis.RedisError)
    broker = RedisBroker(url=url, namespace=f"outreach-test-{uuid.uuid4().hex[:8]}")
    broker.emit_after("process_boot")
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def rabbitmq_broker() -> Iterator[Any]:
    """The machine's RabbitMQ as a Dramatiq broker."""
    import pika
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    url = os.environ.get("OUTREACH_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/%2F")
    _service("RabbitMQ", "OUTREACH_TEST_RABBITMQ", url, lambda: pika.BlockingConnection(pika.URLParameters(url)).close(), pika.exceptions.AMQPError)
    broker = RabbitmqBroker(url=url)
    broker.emit_after("process_boot")
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def seeded(workspace: Path, database_url: str) -> tuple[Path, str]:
    """A workspace whose database already holds leads and enrollments (on each database)."""
    from tests.cli_helpers import seed

    return seed(workspace, database_url)
