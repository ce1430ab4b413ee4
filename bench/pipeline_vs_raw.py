"""Pipeline against a raw loop: N due first steps through tick -> Redis -> worker -> SMTP, against a
plain aiosmtplib loop sending the same N rendered messages over one connection to the same server.

Both runs talk to one aiosmtpd server in a separate process. They run side by side, round after
round (a fresh database each round); each round's rates and ratio are printed, then the medians.
The worker processes are started, and seen fetching from Redis, before the clock starts, as the raw
loop connects before its clock starts: in production they are a standing service.
Target: the pipeline reaches at least half the raw rate.
Run: .venv/bin/python bench/pipeline_vs_raw.py [--n 10000] [--threads 8] [--processes 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiosmtplib  # noqa: E402
import dramatiq  # noqa: E402
import psycopg  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402

from bench.common import ROOT, START, seeded_app  # noqa: E402
from outreach.mail.compose import Party, compose, make_message_id  # noqa: E402
from outreach.runner import step, tune_collector  # noqa: E402
from workers.actors import declare  # noqa: E402

SERVER = """
import sys, time, asyncio
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw(port: int, n: int) -> float:
    """Render n messages first (not timed), then send them over one connection (timed)."""
    context = {"lead": {"email": "x@load.example", "first_name": "Lead", "company": "Company"}, "owner": {"name": "Priya Sharma"}, "mailbox": {}, "sequence": {"name": "bench"}, "step": {"id": "intro"}}
    from outreach.mail.templates import TemplateSet

    rendered = TemplateSet(ROOT / "templates").render("initial_outreach", context)
    messages = [
        compose(rendered, sender=Party("priya@appneural.example", "Priya Sharma"), recipient=Party(f"lead{i}@load.example"), message_id=make_message_id("appneural.example"), date=START, subject=rendered.subject)
        for i in range(n)
    ]

    async def run() -> float:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
        await client.connect()
        start = time.perf_counter()
        for i, msg in enumerate(messages):
            await client.sendmail("priya@appneural.example", [f"lead{i}@load.example"], msg.as_bytes())
        elapsed = time.perf_counter() - start
        await client.quit()
        return elapsed

    return asyncio.run(run())


def _workers_seen(broker: RedisBroker, namespace: str) -> set[str]:
    """The brokers (one per worker process) that have asked Redis for work: dramatiq keeps their heartbeats."""
    return {key.decode() for key in broker.client.zrange(f"{namespace}:__heartbeats__", 0, -1)}


def _wait_for_workers(broker: RedisBroker, namespace: str, before: set[str], processes: int, workers: subprocess.Popen[bytes]) -> None:
    """Until every worker process is up and fetching: they are a standing service, so their start-up
    is no more part of the pipeline's time than the connection's set-up is of the raw loop's."""
    deadline = time.monotonic() + 120
    while len(_workers_seen(broker, namespace) - before) < processes:
        if workers.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the {processes} worker processes did not start (exit code {workers.returncode})")
        time.sleep(0.1)


def pipeline(port: int, n: int, threads: int, redis_url: str, processes: int) -> float:
    with seeded_app(port, n, n, START + dt.timedelta(minutes=1)) as (app, url):
        namespace = "dramatiq" if processes else f"outreach-bench-{uuid.uuid4().hex[:8]}"
        broker = RedisBroker(url=redis_url, namespace=namespace)
        broker.emit_after("process_boot")
        actors = declare(broker, lambda: app)
        broker.flush_all()
        workers: subprocess.Popen[bytes] | None = None
        worker: dramatiq.Worker | None = None
        if processes:  # the production way: `dramatiq workers.entry` in processes of their own
            env = {**os.environ, "OUTREACH_BROKER_URL": redis_url, "OUTREACH_DATABASE_URL": url, "OUTREACH_WORKSPACE": str(app.settings.root), "OUTREACH_SECRET_KEY": "bench", "PYTHONPATH": str(ROOT)}
            before = _workers_seen(broker, namespace) | {broker.broker_id}
            workers = subprocess.Popen([sys.executable, "-m", "dramatiq", "workers.entry", "--processes", str(processes), "--threads", str(threads)], env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for_workers(broker, namespace, before, processes, workers)
        else:
            worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
            worker.start()
        try:
            start = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as conn:
                while True:
                    step(app, actors.enqueue)  # what the scheduler loop does every few seconds
                    sent = conn.execute("SELECT count(*) FROM message WHERE status = 'sent'").fetchone()[0]  # type: ignore[index]
                    if sent >= n:
                        break
                    time.sleep(0.25)  # a scheduler round every quarter second (production: every few seconds)
            return time.perf_counter() - start
        finally:
            if workers is not None:
                workers.send_signal(signal.SIGTERM)
                workers.wait(60)
            if worker is not None:
                worker.stop()
            broker.flush_all()
            broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8, help="worker threads (per process)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (`dramatiq workers.entry`); 0: threads in this process")
    parser.add_argument("--rounds", type=int, default=3, help="pipeline and raw loop side by side, this many times; the ratio is the median")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if args.n < 1 or args.rounds < 1:
        parser.error("--n and --rounds are at least 1")
    tune_collector()  # this process is the scheduler (as `outreach scheduler` does) and then the raw loop
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    how = f"{args.processes} worker processes x {args.threads} threads" if args.processes else f"{args.threads} worker threads"
    rounds: list[tuple[float, float]] = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for number in range(1, args.rounds + 1):
            # side by side, round after round: the machine is shared, and a burst of load elsewhere
            # slows the one run it falls on (the raw loop, one connection's round trips, the most)
            pipe_rate, raw_rate = args.n / pipeline(port, args.n, args.threads, args.redis, args.processes), args.n / raw(port, args.n)
            rounds.append((pipe_rate, raw_rate))
            print(f"round {number}: pipeline (tick -> Redis -> {how} -> SMTP) {pipe_rate:5.0f} msg/s; raw aiosmtplib loop over one connection {raw_rate:5.0f} msg/s; ratio {pipe_rate / raw_rate:.2f}", flush=True)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)
    ratios = [pipe / raw_rate for pipe, raw_rate in rounds]
    print(f"{args.n} messages a round, {args.rounds} rounds: pipeline {statistics.median(p for p, _ in rounds):5.0f} msg/s, raw {statistics.median(r for _, r in rounds):5.0f} msg/s (medians)")
    print(f"ratio pipeline/raw: {statistics.median(ratios):.2f}, rounds {min(ratios):.2f}-{max(ratios):.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
