"""The IMAP poller against Dovecot and PostgreSQL, three measurements in one run:

1. idle poll cost: a pass over a mailbox whose INBOX holds 50,000 messages vs one holding 100,
   with nothing new (incremental by UID). Target: under 1.2x.
2. processing 5,000 new messages (headers, bodies where they matter, classification, matching,
   database writes) vs a bare imapclient fetch of the same header fields over the same UIDs.
   Target: at least half the bare rate. The two run side by side, round after round, on fresh
   mail each round; the ratio is the median over the rounds. The mix is stated and varied: a share
   of the messages answer our mail (of those, half are replies, a quarter out-of-office
   auto-replies, a quarter bounces), the rest are newsletters and other mail that is not ours.
3. reply-to-stopped latency with IDLE: a reply is APPENDed, the clock runs until the lead's
   enrollment is stopped; p50 and p95 over the samples.

Run: .venv/bin/python bench/poll.py [--big 50000] [--new 5000] [--answers 0,0.02,0.05,0.1] [--rounds 5] [--samples 20]
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
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import START, postgres_database, workspace  # noqa: E402
from outreach.runner import tune_collector  # noqa: E402
from tests.servers import Dovecot  # noqa: E402

PASSWORD_ENV = "OUTREACH_BENCH_IMAP_PASSWORD"
BIG, SMALL = "priya@appneural.example", "rahul@appneural.example"


def message(i: int, *, answer_to: str | None = None, lead: str | None = None, kind: str = "reply", to: str = BIG) -> bytes:
    """Mail that is not ours (a newsletter), or an answer to our <answer_to> from `lead`: a reply, an
    out-of-office auto-reply or a bounce."""
    if answer_to and kind == "bounce":  # a Postfix-style delivery status notification
        return BOUNCE.format(to=to, lead=lead, answer_to=answer_to, i=i, pid=os.getpid(), date=format_datetime(START)).replace("\n", "\r\n").encode()
    msg = EmailMessage()
    if answer_to:
        msg["From"] = f"Lead {i} <{lead}>"
        msg["In-Reply-To"] = answer_to
        msg["References"] = answer_to
        if kind == "auto_reply":
            msg["Subject"] = "Automatic reply: A proposal"
            msg["Auto-Submitted"] = "auto-replied"
            back = START.date() + dt.timedelta(days=3 + i % 20)
            msg.set_content(f"I am out of the office until {back:%d %B %Y} with limited access to email.\n")
        else:
            msg["Subject"] = "Re: A proposal"
            msg.set_content(f"Thanks, that works for us. Let's talk on Thursday.\n\nLead {i}\n\nOn Mon, someone wrote:\n> A proposal\n")
    else:
        msg["From"] = f"Newsletter {i % 50} <news{i % 50}@lists.example.org>"
        msg["Subject"] = f"Weekly digest #{i}"
        msg["List-Id"] = f"<digest{i % 50}.lists.example.org>"
        msg.set_content(f"Issue {i}: the news of the week.\n" * 20)
    msg["To"] = to
    msg["Message-ID"] = f"<bench-{i}-{os.getpid()}@example.org>"
    msg["Date"] = format_datetime(START)
    return msg.as_bytes()


BOUNCE = """From: Mail Delivery System <MAILER-DAEMON@mx.load.example>
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: {date}
Message-ID: <bench-{i}-{pid}@mx.load.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B{i}"

--B{i}
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered to {lead}.

--B{i}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.load.example

Final-Recipient: rfc822; {lead}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{lead}>: Recipient address rejected: User unknown

--B{i}
Content-Type: text/rfc822-headers

From: {to}
To: {lead}
Subject: A proposal
Message-ID: {answer_to}

--B{i}--
"""

ANSWER_KINDS = ("reply", "auto_reply", "reply", "bounce")  # of the answers: half replies, a quarter each auto-replies and bounces


def fill_maildir(dovecot: Dovecot, user: str, messages: list[bytes]) -> None:
    """Files straight into the user's maildir (Dovecot indexes them on the next SELECT): far faster than APPEND."""
    cur = dovecot.root / "mail" / user / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    stamp = time.time_ns()
    for n, raw in enumerate(messages):
        (cur / f"{stamp // 10**9}.M{stamp % 10**9}N{n}P{os.getpid()}.bench,S={len(raw)}:2,").write_bytes(raw)
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(dovecot.root / "mail")], check=True)


def empty_maildir(dovecot: Dovecot, user: str) -> None:
    """Removes every message of the user's INBOX behind Dovecot's back (it notices on the next SELECT or NOOP)."""
    for sub in ("cur", "new"):
        for path in (dovecot.root / "mail" / user / sub).glob("*"):
            path.unlink()


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
    times: dict[str, list[float]] = {BIG: [], SMALL: []}
    for _ in range(50):  # alternating, so both see the same machine
        for box in (BIG, SMALL):
            times[box].append(median_time(pollers[box].poll, 1))
    t_big, t_small = statistics.median(times[BIG]), statistics.median(times[SMALL])
    for poller in pollers.values():
        poller.close()
    print(f"1. idle pass, INBOX with {big} messages: {t_big * 1000:7.2f} ms; with 100: {t_small * 1000:7.2f} ms; ratio {t_big / t_small:.2f} (target < 1.2)")


class Leads:
    """Hands out seeded leads that have not answered yet: every answer in the benchmark stops a running enrollment."""

    def __init__(self, count: int) -> None:
        self.next, self.count = 1, count

    def take(self, n: int) -> range:
        if self.next + n - 1 > self.count:
            raise SystemExit(f"not enough seeded leads: raise the seed count ({self.count})")
        taken = range(self.next, self.next + n)
        self.next += n
        return taken


def throughput(dovecot: Dovecot, app, new: int, shares: list[float], rounds: int, leads: Leads) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    from outreach.mail import intake
    from outreach.mail.reader import HEADER_PART
    from outreach.poller import CHUNK, MailboxPoller

    box = "meera@appneural.example"
    intake.shared().start()  # as the watcher does: the reading worker is up before the first mail
    poller = MailboxPoller(app, app.mailbox_config(box))
    poller.poll()  # cursors at the end of the empty folders
    client = IMAPClient("127.0.0.1", port=dovecot.port, ssl=False, timeout=60)
    client.login(box, "bench")
    serial = 0
    print(f"2. {new} new messages a round, {rounds} rounds a mix; bare header fetch and poller side by side on the same UIDs (target: ratio >= 0.5)")
    for share in shares:
        answers = round(new * share)
        every = new // answers if answers else new + 1
        bare_rates, poll_rates, ratios = [], [], []
        for _ in range(rounds):
            ids = iter(leads.take(answers))
            batch, expected = [], Counter()
            for i in range(new):
                serial += 1
                placed = sum(expected.values())
                if i % every == 0 and placed < answers:
                    lead = next(ids)
                    kind = ANSWER_KINDS[placed % len(ANSWER_KINDS)]
                    expected[kind] += 1
                    batch.append(message(serial, answer_to=f"<intro-{lead}@appneural.example>", lead=f"lead{lead}@load.example", kind=kind, to=box))
                else:
                    batch.append(message(serial, to=box))
            first = int(client.select_folder("INBOX", readonly=True)[b"UIDNEXT"])
            fill_maildir(dovecot, box, batch)
            client.select_folder("INBOX", readonly=True)  # Dovecot indexes the new files once, outside both timings

            def bare() -> None:
                client.noop()  # INBOX stays selected, as the poller keeps it between passes: a NOOP brings the view up to date
                uids = sorted(client.search(["UID", f"{first}:*"]))
                for start in range(0, len(uids), CHUNK):
                    client.fetch(uids[start : start + CHUNK], [HEADER_PART, "RFC822.SIZE", "INTERNALDATE"])  # the same headers the poller reads

            t_bare = median_time(bare, 1)
            start = time.perf_counter()
            result = poller.poll()
            t_poll = time.perf_counter() - start
            got = Counter({kind: result.recorded[kind] for kind in expected})
            if result.seen != new or got != expected:
                raise SystemExit(f"the poller read {result.seen} of {new} and recorded {dict(result.recorded)}, expected {dict(expected)}")
            empty_maildir(dovecot, box)  # the next round starts from an INBOX of the same size
            # The poller's connection hears of the removal (an EXPUNGE response per message) here,
            # outside the timings: emptying the folder is the benchmark's doing, not mail to read.
            poller.poll()
            bare_rates.append(new / t_bare)
            poll_rates.append(new / t_poll)
            ratios.append(t_bare / t_poll)
        print(f"   {share:4.0%} answers ({answers:4d} a round): poller {statistics.median(poll_rates):6.0f} msg/s, bare {statistics.median(bare_rates):6.0f} msg/s; "
              f"ratio {statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    client.logout()
    poller.close()


def latency(dovecot: Dovecot, app, samples: int, leads: Leads) -> None:  # type: ignore[no-untyped-def]
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
        for lead_id in leads.take(samples):
            raw = message(100_000 + lead_id, answer_to=f"<intro-{lead_id}@appneural.example>", lead=f"lead{lead_id}@load.example")
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
    parser.add_argument("--answers", default="0,0.02,0.05,0.1", help="shares of the new messages that answer our mail, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    try:
        shares = [float(x) for x in args.answers.split(",")]
    except ValueError:
        parser.error(f"--answers: {args.answers!r} is not a comma-separated list of shares such as 0,0.02,0.1")
    if any(not 0 <= x <= 1 for x in shares):
        parser.error("--answers: each share is between 0 and 1")
    seeded = sum(round(args.new * x) for x in shares) * args.rounds + args.samples
    leads = Leads(max(1000, seeded))
    dovecot = Dovecot({box: "bench" for box in (BIG, SMALL, "meera@appneural.example", "support@appneural.example")}).start()
    try:
        with setup(dovecot, leads.count) as (app, _url):
            tune_collector()  # as `outreach poll` does once it has started (both sides of each ratio run in this process)
            idle_cost(dovecot, app, args.big)
            throughput(dovecot, app, args.new, shares, args.rounds, leads)
            latency(dovecot, app, args.samples, leads)
    finally:
        dovecot.stop()


if __name__ == "__main__":
    main()
