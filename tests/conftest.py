from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from outreach.mail import intake
    from tests.servers import Dovecot, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CI = bool(os.environ.get("CI"))
UTC = dt.timezone.utc

PG_URL = os.environ.get("OUTREACH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


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
        if CI:
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
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
    """A fresh, empty PostgreSQL database on the machine's server (fails in CI when it is down)."""
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outreach.sqlite'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def smtp_server() -> Iterator["SmtpServer"]:
    from tests.servers import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def dovecot(monkeypatch: pytest.MonkeyPatch) -> Iterator["Dovecot"]:
    """A real Dovecot with the four shipped mailboxes as users (fails in CI when it is missing)."""
    from tests.pipeline import MAILBOXES, PASSWORD, PASSWORD_ENV
    from tests.servers import Dovecot

    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        if CI:
            raise RuntimeError("dovecot is not installed: apt-get install -y dovecot-imapd (.ci/run does it)")
        pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd)")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = Dovecot({box: PASSWORD for box in MAILBOXES}).start()
    yield server
    server.stop()


@pytest.fixture
def start_readers() -> Iterator[Callable[[int], "intake.Readers"]]:
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


def _service(name: str, connect: Any) -> None:
    try:
        connect()
    except Exception as exc:
        if CI:
            raise
        pytest.skip(f"{name} is not reachable: {exc}")


@pytest.fixture
def redis_broker() -> Iterator[Any]:
    """The machine's Redis as a Dramatiq broker, in a namespace of its own (fails in CI when down)."""
    import redis
    from dramatiq.brokers.redis import RedisBroker

    url = os.environ.get("OUTREACH_TEST_REDIS", "redis://127.0.0.1:6379/0")
    _service("Redis", lambda: redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    broker = RedisBroker(url=url, namespace=f"outreach-test-{uuid.uuid4().hex[:8]}")
    broker.emit_after("process_boot")
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def rabbitmq_broker() -> Iterator[Any]:
    """The machine's RabbitMQ as a Dramatiq broker (fails in CI when down)."""
    import pika
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    url = os.environ.get("OUTREACH_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/%2F")
    _service("RabbitMQ", lambda: pika.BlockingConnection(pika.URLParameters(url)).close())
    broker = RabbitmqBroker(url=url)
    broker.emit_after("process_boot")
    yield broker
    broker.flush_all()
    broker.close()
