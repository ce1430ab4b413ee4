"""Shared set-up for the benchmarks: a throwaway PostgreSQL database, a workspace, seeded rows."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import yaml

if TYPE_CHECKING:
    from outreach.service import App

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("OUTREACH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # a Monday, inside the Indian window

ONE_STEP = """name: bench-intro
mailbox: owner
timezone: Asia/Kolkata
window: {days: mon-sun, hours: "00:00-24:00"}
steps:
  - id: intro
    template: initial_outreach
"""


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"outreach_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def workspace(smtp_port: int, imap_port: int | None = None, password_env: str = "") -> Iterator[Path]:
    """The shipped templates and team, one always-open one-step sequence, mailboxes on the given
    ports (IMAP only when a port is given, its password in the variable named `password_env`)."""
    path = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        shutil.copytree(ROOT / "templates", path / "templates")
        (path / "sequences").mkdir()
        (path / "sequences" / "bench-intro.yaml").write_text(ONE_STEP)
        config = yaml.safe_load((ROOT / "outreach.yaml").read_text())
        config.pop("database_url", None)
        for box in config["mailboxes"]:
            box["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "security": "none"}
            box.pop("imap", None)
            if imap_port is not None:
                box["imap"] = {"host": "127.0.0.1", "port": imap_port, "security": "none", "username": box["address"], "password_env": password_env, "save_sent": False}
            box.update({"min_interval": 0, "jitter": 0, "daily_cap": 10_000_000})
        (path / "outreach.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def seed(url: str, total: int, due: int, sequence_id: int, owner_ids: list[int], state: dict, when: dt.datetime) -> None:
    """`total` leads and enrollments in one sequence, `due` of them due at `when`, with generate_series.

    The leads are shared round-robin between the owners, so mail goes out from each one's mailbox.
    """
    far = when + dt.timedelta(days=3650)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO lead (email, domain, first_name, last_name, company, title, phone, timezone, country, fields, owner_id, status, created_at, updated_at)
               SELECT 'lead' || g || '@load.example', 'load.example', 'Lead', 'N' || g, 'Company ' || g, '', '', 'Asia/Kolkata', 'IN', '{}',
                      (%s::int[])[1 + g %% %s], 'Follow-Up', %s, %s
               FROM generate_series(1, %s) AS g""",
            (owner_ids, len(owner_ids), when, when, total),
        )
        conn.execute(
            """INSERT INTO enrollment (lead_id, sequence_id, sequence_name, phase, state, next_action_at, seed, enrolled_at, updated_at)
               SELECT l.id, %s, 'bench-intro', 'active', %s::json,
                      CASE WHEN row_number() OVER (ORDER BY l.id) <= %s THEN %s ELSE %s END,
                      l.id, %s, %s
               FROM lead l WHERE l.email LIKE 'lead%%@load.example'""",
            (sequence_id, __import__("json").dumps(state), due, when, far, when, when),
        )
        conn.execute("ANALYZE")


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """The median wall time of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def seeded_app(smtp_port: int, total: int, due: int, now: dt.datetime) -> Iterator[tuple["App", str]]:
    """A fresh PostgreSQL database with `total` enrollments in the one-step sequence, `due` of them due."""
    from outreach.clock import FakeClock
    from outreach.config import load_settings
    from outreach.db.session import make_engine, upgrade
    from outreach.runner import prepare
    from outreach.sequences import engine as eng
    from outreach.service import App, state_to_json

    with postgres_database() as url, workspace(smtp_port) as ws:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        app = App(load_settings(ws, {"OUTREACH_DATABASE_URL": url, "OUTREACH_SECRET_KEY": "bench"}), FakeClock(now), migrate=False)
        try:
            prepare(app)
            with psycopg.connect(url, autocommit=True) as conn:
                sequence_id = conn.execute("SELECT id FROM sequence WHERE name = 'bench-intro'").fetchone()[0]  # type: ignore[index]
                owner_ids = [row[0] for row in conn.execute("SELECT id FROM person WHERE mailbox_id IS NOT NULL ORDER BY id")]
            seed(url, total, due, sequence_id, owner_ids, state_to_json(eng.State.start(START - dt.timedelta(hours=1), 1)), START)
            yield app, url
        finally:
            app.close()
