"""The IMAP poller against Dovecot and PostgreSQL, three measurements in one run:

1. idle poll cost: a pass over a mailbox whose INBOX holds 50,000 messages vs one holding 100,
   with nothing new (incremental by UID). Target: under 1.2x.
2. processing 5,000 new messages (headers, bodies where they matter, classification, matching,
   database writes) vs a bare imapclient fetch of the same header fields. Target: at least half the
   bare rate. The mix is stated: by default one message in ten answers our mail.
3. reply-to-stopped latency with IDLE: a reply is APPENDed, the clock runs until the lead's
   enrollment is stopped; p50 and p95 over the samples.

Run: .venv/bin/python bench/poll.py [--big 50000] [--new 5000] [--answers 0.1] [--samples 20]
"""

from __future__ import annotations

import argparse
import json
import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import START, postgres_database, workspace  # noqa: E402
from tests.servers import Dovecot  # noqa: E402

PASSWORD_ENV = "OUTREACH_BENCH_IMAP_PASSWORD"
BIG, SMALL = "priya@appneural.example", "rahul@appneural.example"


def message(i: int, *, answer_to: str | None = None, lead: str | None = None) -> bytes:
    msg = EmailMessage()
    if answer_to:
        msg["From"] = f"Lead {i} <{lead}>"
        msg["Subject"] = "Re: A proposal"
        msg["In-Reply-To"] = answer_to
        msg["References"] = answer_to
        msg.set_content(f"Thanks, that works for us. Let's talk on Thursday.\n\nLead {i}\n\nOn Mon, someone wrote:\n> A proposal\n")
    else:
        msg["From"] = f"Newsletter {i % 50} <news{i % 50}@lists.example.org>"
        msg["Subject"] = f"Weekly digest #{i}"
        msg["List-Id"] = f"<digest{i % 50}.lists.example.org>"
        msg.set_content(f"Issue {i}: the news of the week.\n" * 20)
    msg["To"] = BIG
    msg["Message-ID"] = f"<bench-{i}-{os.getpid()}@example.org>"
    msg["Date"] = format_datetime(START)
    return msg.as_bytes()


def fill_maildir(dovecot: Dovecot, user: str, messages: list[bytes]) -> None:
    """Files straight into the user's maildir (Dovecot indexes them on the next SELECT): far faster than APPEND."""
    cur = dovecot.root / "mail" / user / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    stamp = int(time.time())
    for n, raw in enumerate(messages):
        (cur / f"{stamp}.M{n}P{os.getpid()}.bench,S={len(raw)}:2,").write_bytes(raw)
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(dovecot.root / "mail")], check=True)


@contextmanager
def setup(dovecot: Dovecot, leads: int) -> Iterator[tuple[object, str]]:
    from outreach.clock import FakeClock
    from outreach.config import load_settings
    from outreach.db.session import make_engine, upgrade
    from outreach.runner import prepare
    from outreach.service import App

    os.environ[PASSWORD_ENV] = "bench"
    with postgres_database() as url, workspace(1, dovecot.port, PASSWORD_ENV) as path:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        app = App(load_settings(path, {"OUTREACH_DATABASE_URL": url, "OUTREACH_SECRET_KEY": "bench"}), FakeClock(START + dt.timedelta(days=1)), migrate=False)
        try:
            prepare(app)
            seed_threads(url, leads)
            yield app, url
        finally:
            app.close()


def seed_threads(url: str, n: int) -> None:
    """n leads of Priya's, each enrolled with one intro sent as <intro-i@appneural.example>."""
    from outreach.sequences import engine as eng
    from outreach.service import state_to_json

    with psycopg.connect(url, autocommit=True) as conn:
        owner, box = conn.execute("SELECT id, mailbox_id FROM person WHERE email = %s", (BIG,)).fetchone()  # type: ignore[misc]
        seq = conn.execute("SELECT id FROM sequence WHERE name = 'bench-intro'").fetchone()[0]  # type: ignore[index]
        conn.execute(
            """INSERT INTO lead (email, domain, first_name, last_name, company, title, phone, timezone, country, fields, owner_id, status, created_at, updated_at)
               SELECT 'lead' || g || '@load.example', 'load.example', 'Lead', 'N' || g, 'Company', '', '', 'Asia/Kolkata', 'IN', '{}', %s, 'Follow-Up', %s, %s FROM generate_series(1, %s) g""",
            (owner, START, START, n),
        )
        conn.execute(
            """INSERT INTO enrollment (lead_id, sequence_id, sequence_name, phase, state, next_action_at, seed, enrolled_at, updated_at)
               SELECT id, %s, 'bench-intro', 'active', %s::json, %s, id, %s, %s FROM lead""",
            (seq, json.dumps(state_to_json(eng.State.start(START, 1))), START + dt.timedelta(days=30), START, START),
        )
        conn.execute("INSERT INTO thread (enrollment_id, number, subject, root_message_id) SELECT id, 1, 'A proposal', '<intro-' || lead_id || '@appneural.example>' FROM enrollment")
        conn.execute(
            """INSERT INTO message (direction, enrollment_id, lead_id, thread_id, mailbox_id, step_key, template, message_id, status, subject, sender, recipient, attempts, saved_to_sent, sent_at, created_at)
               SELECT 'out', e.id, e.lead_id, t.id, %s, 'intro@1', 'initial_outreach', t.root_message_id, 'sent', 'A proposal', %s, l.email, 1, false, %s, %s
               FROM enrollment e JOIN thread t ON t.enrollment_id = e.id JOIN lead l ON l.id = e.lead_id""",
            (box, BIG, START, START),
        )
        conn.execute("ANALYZE")


def median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def idle_cost(dovecot: Dovecot, app, big: int) -> None:  # type: ignore[no-untyped-def]
    from outreach.poller import MailboxPoller

    fill_maildir(dovecot, BIG, [message(i) for i in range(big)])
    fill_maildir(dovecot, SMALL, [message(i) for i in range(100)])
    pollers = {box: MailboxPoller(app, app.mailbox_config(box)) for box in (BIG, SMALL)}
    for poller in pollers.values():
        poller.poll()  # the first pass indexes the folders and places the cursors
        poller.poll()
    t_big = median_time(pollers[BIG].poll, 30)
    t_small = median_time(pollers[SMALL].poll, 30)
    for poller in pollers.values():
        poller.close()
    print(f"1. idle pass, INBOX with {big} messages: {t_big * 1000:7.2f} ms; with 100: {t_small * 1000:7.2f} ms; ratio {t_big / t_small:.2f} (target < 1.2)")


def throughput(dovecot: Dovecot, app, url: str, new: int, answers: float) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    from outreach.mail.reader import HEADER_PART
    from outreach.poller import CHUNK, MailboxPoller

    every = max(1, round(1 / answers)) if answers > 0 else new + 1
    batch = [message(i, answer_to=f"<intro-{i // every + 1}@appneural.example>", lead=f"lead{i // every + 1}@load.example") if i % every == 0 else message(i) for i in range(new)]
    box = "meera@appneural.example"
    poller = MailboxPoller(app, app.mailbox_config(box))
    poller.poll()  # cursors at the end of the empty folders
    fill_maildir(dovecot, box, batch)
    client = IMAPClient("127.0.0.1", port=dovecot.port, ssl=False, timeout=60)
    client.login(box, "bench")
    client.select_folder("INBOX", readonly=True)  # Dovecot indexes the new files once, outside both timings

    def bare() -> None:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["UID", "1:*"]))
        for start in range(0, len(uids), CHUNK):
            client.fetch(uids[start : start + CHUNK], [HEADER_PART, "RFC822.SIZE", "INTERNALDATE"])  # the same headers the poller reads

    t_bare = median_time(bare, 3)
    start = time.perf_counter()
    result = poller.poll()
    t_poll = time.perf_counter() - start
    client.logout()
    poller.close()
    print(f"2. {new} new messages ({result.recorded['reply']} answers to our mail, the rest newsletters): poller {new / t_poll:7.0f} msg/s, bare header fetch {new / t_bare:7.0f} msg/s; ratio {t_bare / t_poll:.2f} (target >= 0.5)")


def latency(dovecot: Dovecot, app, samples: int) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from outreach.db.models import Enrollment
    from outreach.poller import watch

    box = "support@appneural.example"
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(app, app.mailbox_config(box), stop), kwargs={"interval": 60}, daemon=True)
    watcher.start()
    time.sleep(2)  # the first pass, then IDLE
    waits = []
    client = dovecot.client(box)
    try:
        for k in range(samples):
            lead_id = 900 + k
            raw = message(100_000 + k, answer_to=f"<intro-{lead_id}@appneural.example>", lead=f"lead{lead_id}@load.example")
            start = time.perf_counter()
            client.append("INBOX", raw)
            while True:
                with app.sessions() as session:
                    if session.scalar(select(Enrollment.phase).where(Enrollment.lead_id == lead_id)) == "stopped":
                        break
                time.sleep(0.01)
            waits.append(time.perf_counter() - start)
            time.sleep(0.3)
    finally:
        client.logout()
        stop.set()
        watcher.join(10)
    waits.sort()
    p95 = waits[min(len(waits) - 1, int(round(0.95 * len(waits))) - 1)]
    print(f"3. reply to stopped with IDLE, {samples} replies: p50 {statistics.median(waits):.2f} s, p95 {p95:.2f} s, max {waits[-1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=50_000)
    parser.add_argument("--new", type=int, default=5_000)
    parser.add_argument("--answers", type=float, default=0.1, help="share of the new messages that answer our mail")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    dovecot = Dovecot({box: "bench" for box in (BIG, SMALL, "meera@appneural.example", "support@appneural.example")}).start()
    try:
        with setup(dovecot, max(1000, args.new)) as (app, url):
            idle_cost(dovecot, app, args.big)
            throughput(dovecot, app, url, args.new, args.answers)
            latency(dovecot, app, args.samples)
    finally:
        dovecot.stop()


if __name__ == "__main__":
    main()
