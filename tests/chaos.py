"""Chaos harness: private PostgreSQL and Redis, the real outreach processes, people answering over
IMAP, crash-like faults, and a count of what the SMTP server accepted.

Everything here runs real programs as child processes, each in a process group of its own, so a
SIGKILL takes a Dramatiq master and its forked worker down together (as a machine or container
losing the process would) and teardown can end every process it started by its group id.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

import psycopg
import redis

from tests.servers import Received, SmtpServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on the machine (Debian's layout), if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parent.name == "bin"]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def redis_binary() -> Path | None:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return Path(found) if Path(found).exists() else None


def dovecot_binary() -> Path | None:
    found = shutil.which("dovecot") or "/usr/sbin/dovecot"
    return Path(found) if Path(found).exists() else None


# ---- the SMTP server's record, with the time of each acceptance ---------------------------------


class TimedList(list[Received]):
    """`smtp.received` that also notes when each message was accepted.

    RecordingHandler appends a message right before it answers 250 (and only if the client is still
    there), so the time of the append is the time of the acceptance. The time goes in first: a
    reader that sees message i always finds times[i].
    """

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Received) -> None:
        self.times.append(time.time())
        super().append(item)

    def snapshot(self) -> list[tuple[float, Received]]:
        count = len(self)
        return [(self.times[i], self[i]) for i in range(count)]


def timed_smtp(smtp: SmtpServer) -> TimedList:
    record = TimedList()
    smtp.handler.received = record
    return record


def message_key(message_id: str | None) -> str:
    """Message-IDs compared without brackets, blanks or case (the database keeps them bracketed)."""
    return (message_id or "").strip().strip("<>").lower()


# ---- PostgreSQL and Redis of the test's own -----------------------------------------------------


class Postgres:
    """A private cluster: initdb'd as the `postgres` OS user (root may not run initdb), trust auth."""

    def __init__(self, root: Path, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = root / "pg"  # owned by postgres: data, socket and log
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bindir / program), *args]
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, program: str, *args: str, timeout: float = 90) -> None:
        done = subprocess.run(
            self._command(program, *args),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}\n{tail}"
            )

    def start(self) -> Postgres:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        # --no-sync skips flushing initdb's own files only; the server itself runs with fsync=on
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", self.options, "-l", str(self.log), "-t", "60", "start", "-w")
        return self

    def restart_immediate(self) -> tuple[float, float]:
        """A crash-like restart (no shutdown checkpoint; crash recovery on start). Returns (down, up)."""
        down = time.time()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            self.options,
            "-l",
            str(self.log),
            "-m",
            "immediate",
            "-t",
            "60",
            "restart",
            "-w",
        )
        return down, time.time()

    def crash_recovered(self) -> bool:
        """Whether the server, started again, went through crash recovery (the restart was crash-like)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "automatic recovery in progress" in text

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.data.exists():
            pid = self.postmaster_pid()
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-t", "30", "stop", "-w", timeout=40)
            except (RuntimeError, subprocess.TimeoutExpired):
                if pid is not None:  # pg_ctl could not stop it: the postmaster goes, its backends follow it
                    _kill_pid(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A broker an operator would run with persistence: append-only file, fsync on every write."""

    def __init__(self, root: Path, binary: Path) -> None:
        self.binary = binary
        self.dir = root / "redis"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        with open(self.dir / f"redis-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        wait_port(self.port, timeout=30)
        return self

    def reloaded(self) -> bool:
        """Whether the last start loaded the append-only file the killed server left."""
        log = self.dir / f"redis-{self.starts}.log"
        return self.starts > 1 and log.exists() and "loaded from append only file" in log.read_text(errors="replace")

    def kill(self) -> float:
        """SIGKILL: the broker is gone without a chance to write anything more."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return time.time()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# ---- the outreach processes ---------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    role: str  # scheduler | worker | poll
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    ended: float | None = None
    end: str = ""  # "SIGKILL (fault)", "stopped", "exited by itself (rc N)"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Starts programs in process groups of their own, logs each to a file, ends them by group id."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.logs = logs
        self.env = env
        self.cwd = cwd
        self.all: list[Proc] = []
        self._numbers: Counter[str] = Counter()
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, role: str, argv: list[str]) -> Proc:
        self._numbers[role] += 1
        name = f"{role}-{self._numbers[role]:02d}"
        log = self.logs / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        proc = Proc(name, role, popen, log, time.time())
        self.all.append(proc)
        return proc

    def running(self, role: str) -> list[Proc]:
        self.notice_exits()
        return [p for p in self.all if p.role == role and p.alive]

    def notice_exits(self) -> None:
        for proc in self.all:
            if proc.ended is None and not proc.alive:
                proc.ended = time.time()
                proc.end = f"exited by itself (rc {proc.popen.returncode})"

    def kill(self, proc: Proc) -> None:
        """SIGKILL the whole group: a Dramatiq master and the worker it forked die at the same instant."""
        _signal_group(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
        proc.ended = time.time()
        proc.end = "SIGKILL (fault)"

    def stop_all(self, grace: float = 6.0) -> None:
        """SIGTERM to every group still there, SIGKILL after `grace` seconds."""
        self.notice_exits()
        for proc in self.all:
            if proc.alive:
                _signal_group(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.all:
            if proc.alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.all:
            stopped = not proc.alive
            # the whole group, even when its leader is gone: a forked child may outlive its master
            _signal_group(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)
            if proc.ended is None:
                proc.ended = time.time()
                proc.end = "stopped" if stopped else "SIGKILL after SIGTERM was not enough"

    def leftovers(self, wait: float = 5.0) -> list[str]:
        """The groups this harness started that still have a member after `wait` seconds (a killed
        group's orphans are reaped by init a moment after their leader; they are given that moment)."""
        deadline = time.monotonic() + wait
        while True:
            left = [proc.name for proc in self.all if _group_exists(proc.popen.pid)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def tracebacks(self) -> dict[str, int]:
        return {
            p.name: sum("Traceback" in line for line in p.log.read_text(errors="replace").splitlines())
            for p in self.all
        }


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the id went to someone else's processes: none of ours is left in it
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def outreach_command(*args: str) -> list[str]:
    return [str(BIN / "outreach"), *args]


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        outreach_command(*args),
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"outreach {' '.join(args[:3])} ... failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


# ---- leads, and people answering ----------------------------------------------------------------

FIRST = (
    "Aarav", "Diya", "Ishaan", "Kiara", "Rohan", "Saanvi", "Arjun", "Nisha", "Kabir", "Tara",
    "Emily", "George", "Amelia", "Harry", "Sophie", "Jack", "Lucy", "Noah", "Freya", "Leo",
)  # fmt: skip
LAST = (
    "Kapoor", "Menon", "Iyer", "Das", "Pillai", "Joshi", "Reddy", "Bose", "Gupta", "Nair",
    "Clarke", "Walsh", "Turner", "Hughes", "Patel", "Evans", "Wright", "Morgan", "Shaw", "Fox",
)  # fmt: skip
TRADES = ("Logistics", "Retail", "Health", "Foods", "Textiles", "Energy", "Pharma", "Motors", "Finance", "Media")
COLUMNS = "First Name,Last Name,Email,Company Name,Job Title,Phone Number,Time Zone,Country,Owner,Industry"


@dataclass(frozen=True)
class Person:
    email: str
    first: str
    last: str
    company: str
    owner: str  # the team member who owns the lead
    owner_name: str
    mailbox: str  # the mailbox the owner sends from, where the answer lands


def make_leads(count: int, owners: list[tuple[str, str, str]], rng: random.Random) -> list[Person]:
    """`count` people, each at a company of their own (a shared domain would make colleagues of them),
    owners taken in turn from (email, name, mailbox)."""
    people = []
    for i in range(count):
        first, last, trade = FIRST[i % len(FIRST)], LAST[(i * 7 + i // len(FIRST)) % len(LAST)], TRADES[i % len(TRADES)]
        company = f"{last} {trade} {i + 1}"
        slug = f"{last}-{trade}{i + 1}".lower()
        owner, owner_name, mailbox = owners[i % len(owners)]
        people.append(
            Person(f"{first}.{last}@{slug}.example".lower(), first, last, company, owner, owner_name, mailbox)
        )
    rng.shuffle(people)  # owners spread, not in stripes, whatever the later choices take
    return people


def leads_csv(people: Iterable[Person], path: Path) -> Path:
    zones = (("Asia/Kolkata", "IN", "+91 80 4000 {:04d}"), ("Europe/London", "GB", "+44 20 7946 {:04d}"))
    rows = [COLUMNS]
    for i, p in enumerate(people):
        zone, country, phone = zones[i % 2]
        rows.append(
            f"{p.first},{p.last},{p.email},{p.company},Head of Operations,{phone.format(i)},{zone},{country},"
            f"{p.owner},{p.company.split()[1]}"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


REPLIES = (
    "Thanks for reaching out. The timing is good: could we talk on Thursday afternoon?",
    "Hi, this looks relevant. Please send me a short proposal and a price range.",
    "Thanks, but we are not looking at this right now. Maybe next quarter.",
    "Interesting. I have forwarded this to our CTO, who will get back to you.",
)


@dataclass
class Answer:
    lead: str
    kind: str  # reply | out-of-office
    to_message: str  # the Message-ID answered
    due: float
    appended_at: float | None = None
    attempts: int = 0
    error: str = ""


class Responder:
    """People answering: once a lead's first email is accepted, the chosen ones answer it into their
    owner's INBOX after a random 0-20 s, a person's reply or an out-of-office."""

    def __init__(
        self,
        received: TimedList,
        append: Callable[[str, bytes], None],
        people: dict[str, Person],
        plan: dict[str, str],
        seed: int,
        delay: tuple[float, float] = (0.0, 20.0),
    ) -> None:
        self.received = received
        self.append = append
        self.people = people
        self.plan = plan
        self.delay = delay
        self.rng = random.Random(seed)
        self.answers: dict[str, Answer] = {}
        self._originals: dict[str, Received] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="responder", daemon=True)

    def start(self) -> Responder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def pending(self) -> int:
        return sum(1 for a in list(self.answers.values()) if a.appended_at is None and a.attempts < 5)

    @property
    def last_append(self) -> float:
        return max((a.appended_at or 0.0 for a in list(self.answers.values())), default=0.0)

    def _run(self, hard_limit: float = 900.0) -> None:
        seen = 0
        ends = time.monotonic() + hard_limit  # a forgotten stop() cannot leave it running for ever
        while not self._stop.wait(0.1) and time.monotonic() < ends:
            try:
                snapshot = self.received.snapshot()
                for at, item in snapshot[seen:]:
                    lead = item.recipients[0].lower() if item.recipients else ""
                    if lead in self.plan and lead not in self.answers:
                        self.answers[lead] = Answer(
                            lead,
                            self.plan[lead],
                            str(item.message["Message-ID"] or ""),
                            at + self.rng.uniform(*self.delay),
                        )
                        self._originals[lead] = item
                seen = len(snapshot)
                for answer in list(self.answers.values()):
                    if answer.appended_at is None and answer.attempts < 5 and answer.due <= time.time():
                        self._answer(answer)
            except Exception as exc:  # noqa: BLE001 - the thread must go on answering; what went wrong is reported
                if len(self.errors) < 100:  # the same failure may come back every turn
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def _answer(self, answer: Answer) -> None:
        person = self.people[answer.lead]
        original = self._originals[answer.lead].message
        try:
            raw = (reply if answer.kind == "reply" else out_of_office)(person, original, self.rng)
            self.append(person.mailbox, raw)
            answer.appended_at = time.time()
        except (OSError, imaplib.IMAP4.error) as exc:  # Dovecot stays up; a failed APPEND is tried again a second later
            answer.attempts += 1
            answer.due = time.time() + 1
            answer.error = f"{type(exc).__name__}: {exc}"


def _answer_headers(person: Person, original: EmailMessage, subject: str) -> EmailMessage:
    message_id = str(original["Message-ID"] or "").strip()
    references = f"{str(original['References'] or '').strip()} {message_id}".strip()
    msg = EmailMessage()
    msg["From"] = formataddr((f"{person.first} {person.last}", person.email))
    msg["To"] = formataddr((person.owner_name, person.mailbox))
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=person.email.rpartition("@")[2])
    msg["In-Reply-To"] = message_id
    msg["References"] = references
    return msg


def reply(person: Person, original: EmailMessage, rng: random.Random) -> bytes:
    subject = str(original["Subject"] or "")
    msg = _answer_headers(person, original, subject if subject.lower().startswith("re:") else f"Re: {subject}")
    owner_first = person.owner_name.split()[0]
    msg.set_content(
        f"Hi {owner_first},\n\n{rng.choice(REPLIES)}\n\nBest regards,\n{person.first} {person.last}\n{person.company}\n"
    )
    return bytes(msg)


def out_of_office(person: Person, original: EmailMessage, rng: random.Random) -> bytes:
    back = dt.date.today() + dt.timedelta(days=30 + rng.randint(0, 3))
    msg = _answer_headers(person, original, f"Out of office: {original['Subject'] or ''}")
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(
        f"Thank you for your email.\n\nI am out of the office with limited access to email and will be back on "
        f"{back:%A} {back.day} {back:%B %Y}. I will answer your message when I return.\n\n"
        f"Kind regards,\n{person.first} {person.last}\n"
    )
    return bytes(msg)


# ---- faults -------------------------------------------------------------------------------------


@dataclass
class FaultLog:
    anchor: float | None = None  # when the first lead email was accepted: Redis and PostgreSQL faults count from it
    worker_kills: list[tuple[float, str]] = field(default_factory=list)
    replacements: int = 0  # workers started in place of a killed one
    revived: int = 0  # workers started in place of one that exited by itself
    redis_killed: float | None = None
    redis_back: float | None = None
    pg_down: float | None = None
    pg_up: float | None = None
    ended: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FaultPlan:
    kill_every: tuple[float, float] = (3.0, 5.0)  # seconds between two worker SIGKILLs
    redis_kill_after: float = 30.0  # after the first accepted email: when step 2 falls due
    redis_down_for: float = 30.0
    pg_restart_after: float = 75.0
    run_for: float = 100.0  # after the first accepted email; the sequence takes about a minute without faults
    wait_first_mail: float = 45.0  # no email by then: the schedule starts from that moment instead
    max_kills: int = 60


def run_faults(
    plan: FaultPlan,
    procs: Processes,
    start_worker: Callable[[], Proc],
    redis: Redis,
    postgres: Postgres,
    first_accepted: Callable[[], float | None],
    rng: random.Random,
    say: Callable[[str], None],
    progress: Callable[[], str],
    t0: float,
) -> FaultLog:
    """Kill a worker every few seconds (and start its replacement), kill Redis once and bring it back
    later, crash-restart PostgreSQL once. Bounded in time and in kills. Says what it does, and every
    15 s how far the sending got, in seconds since `t0`."""
    log = FaultLog()
    began = time.time()
    next_progress = began + 15
    next_kill = began + rng.uniform(*plan.kill_every)
    ends = began + plan.wait_first_mail + plan.run_for  # until the anchor is known
    for _ in range(20_000):  # ~0.1 s a turn: far beyond the time bound, a guard against a stuck clock
        now = time.time()
        if now >= ends:
            break
        if log.anchor is None:
            first = first_accepted()
            if first is not None or now - began >= plan.wait_first_mail:
                log.anchor = first if first is not None else now
                ends = log.anchor + plan.run_for
                if first is None:
                    log.problems.append(
                        f"no lead email accepted within {plan.wait_first_mail:.0f} s; faults timed from then"
                    )
        # a worker that died by itself is replaced too (the way a supervisor would), and said so
        for _revive in range(2 - len(procs.running("worker"))):
            start_worker()
            log.revived += 1
        if log.anchor is not None:
            if log.redis_killed is None and now >= log.anchor + plan.redis_kill_after:
                log.redis_killed = redis.kill()
                say(f"  +{now - t0:5.1f}s  Redis SIGKILLed")
            if (
                log.redis_killed is not None
                and log.redis_back is None
                and now >= log.redis_killed + plan.redis_down_for
            ):
                redis.start()
                log.redis_back = time.time()
                say(f"  +{now - t0:5.1f}s  Redis started again ({log.redis_back - log.redis_killed:.1f} s down)")
            if log.pg_down is None and now >= log.anchor + plan.pg_restart_after:
                try:
                    log.pg_down, log.pg_up = postgres.restart_immediate()
                    say(f"  +{now - t0:5.1f}s  PostgreSQL restarted -m immediate ({log.pg_up - log.pg_down:.1f} s)")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log.pg_down = now
                    log.problems.append(f"PostgreSQL restart failed: {exc}")
        if now >= next_progress:
            say(f"  +{now - t0:5.1f}s  {progress()}; {len(log.worker_kills)} worker SIGKILLs so far")
            next_progress = now + 15
        if now >= next_kill and len(log.worker_kills) < plan.max_kills:
            victims = procs.running("worker")
            if victims:
                victim = rng.choice(victims)
                procs.kill(victim)
                log.worker_kills.append((time.time(), victim.name))
                start_worker()
                log.replacements += 1
            next_kill = time.time() + rng.uniform(*plan.kill_every)
        time.sleep(0.1)
    if log.redis_killed is not None and log.redis_back is None:  # never leave the broker down for the settling
        redis.start()
        log.redis_back = time.time()
    log.ended = time.time()
    return log


# ---- settling and counting ----------------------------------------------------------------------

DONE_PHASES = ("stopped", "completed", "paused")


def outstanding(dsn: str, sequence: str) -> tuple[dict[str, int], int]:
    """Per phase, the enrollments of `sequence`; and outbox messages still to go out soon (planned or
    sending). A message planned weeks ahead (a paused lead) is not part of this run."""
    with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
        phases = conn.execute(
            "SELECT phase, count(*) FROM enrollment WHERE sequence_name = %s GROUP BY phase", (sequence,)
        ).fetchall()
        busy = conn.execute(
            "SELECT count(*) FROM message WHERE direction = 'out' AND (status = 'sending'"
            " OR (status = 'planned' AND (not_before IS NULL OR not_before < now() + interval '10 minutes')))"
        ).fetchone()
    return {str(k): int(v) for k, v in phases}, int(busy[0]) if busy else 0


@dataclass
class Settling:
    done: bool
    at: float
    phases: dict[str, int]
    busy: int  # outbox messages still planned (due soon) or sending
    errors: int  # looks at the database that failed


def settle(dsn: str, sequence: str, leads: int, responder: Responder, grace: float, until: float) -> Settling:
    """Wait (until `until`) for the run to be over: every enrollment stopped, completed or paused,
    nothing due in the outbox, every answer APPENDed and `grace` seconds given to the last one."""
    result = Settling(False, time.time(), {}, -1, 0)
    while time.time() < until:
        try:
            result.phases, result.busy = outstanding(dsn, sequence)
        except (psycopg.Error, OSError):  # PostgreSQL is back by now; a failed look is simply taken again
            result.errors += 1
            time.sleep(2)
            continue
        finished = sum(n for phase, n in result.phases.items() if phase in DONE_PHASES)
        quiet = time.time() - responder.last_append >= grace
        if finished == leads and result.busy == 0 and responder.pending == 0 and quiet:
            result.done = True
            break
        time.sleep(2)
    result.at = time.time()
    return result


@dataclass(frozen=True)
class OutRow:
    step: str | None
    recipient: str
    kind: str
    status: str
    handed: bool  # with the broker (enqueued_at set)
    attempts: int
    not_before: float | None  # the next attempt, epoch seconds
    error: str

    def describe(self, t0: float) -> str:
        when = f", next attempt +{self.not_before - t0:.1f}s" if self.not_before is not None else ""
        broker = ", with the broker" if self.handed else ""
        error = f", last error: {self.error[:160]}" if self.error else ""
        return f"step {self.step} {self.status} (attempts {self.attempts}{when}{broker}{error})"


def outbox(dsn: str) -> dict[str, OutRow]:
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT message_id, step_key, recipient, kind, status, enqueued_at IS NOT NULL, attempts,"
            " extract(epoch FROM not_before), coalesce(error, '') FROM message"
            " WHERE direction = 'out' AND message_id IS NOT NULL"
        ).fetchall()
    return {
        message_key(mid): OutRow(
            step, (rcpt or "").lower(), kind, status, handed, attempts, float(after) if after else None, error
        )
        for mid, step, rcpt, kind, status, handed, attempts, after, error in rows
    }


def broker_state(url: str, stale: float = 15.0) -> str:
    """What Dramatiq's Redis broker holds: broker messages waiting in a queue, and those a worker took
    and has not acknowledged, by whether that worker still sends heartbeats (a SIGKILLed worker's
    messages stay in its ack set until the broker's maintenance gives them back)."""
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        scores: list[tuple[bytes, float]] = client.zrange("dramatiq:__heartbeats__", 0, -1, withscores=True)  # type: ignore[assignment]
        beats = {_text(k): float(t) for k, t in scores}
        now_ms = time.time() * 1000
        waiting = sum(int(client.llen(k)) for k in client.scan_iter("dramatiq:*") if client.type(k) == b"list")
        live = dead = 0
        for key in client.scan_iter("dramatiq:__acks__.*"):
            worker = _text(key).split(".", 2)[1]
            held = int(client.scard(key))
            if now_ms - beats.get(worker, 0.0) > stale * 1000:
                dead += held
            else:
                live += held
    except redis.RedisError as exc:
        return f"unknown ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return f"{waiting} waiting in queues, {live} taken by live workers, {dead} held for workers that are gone"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Arrival:
    at: float
    lead: str
    step: int  # 1-based position in the sequence; 0 for a lead email whose Message-ID the outbox does not know
    message_id: str


@dataclass
class Tally:
    arrivals: dict[str, list[Arrival]]
    team_mail: int
    duplicates: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    after_answer: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    # a message accepted again whose first acceptance a worker's SIGKILL followed within the window:
    # the worker died between the server's 250 and its commit, the one gap no client can close
    in_window: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.out_of_order or self.after_answer or self.missing)


def tally(
    accepted: list[tuple[float, Received]],
    rows: dict[str, OutRow],
    leads: Iterable[str],
    steps: tuple[str, ...],
    answered: dict[str, float],
    grace: float,
    kills: Iterable[float] = (),
    window: float = 0.0,
) -> Tally:
    """What the SMTP server accepted, per lead and step, against the four rules. A repeat of a
    message whose first acceptance a SIGKILL followed within `window` seconds is told apart
    (`in_window`) and left out of the other rules."""
    lead_set = set(leads)
    arrivals: dict[str, list[Arrival]] = {lead: [] for lead in lead_set}
    team = 0
    per_id: Counter[str] = Counter()
    first: dict[str, float] = {}
    lead_of: dict[str, str] = {}
    deaths = sorted(kills)
    in_window: list[str] = []
    for at, item in accepted:
        rcpt = item.recipients[0].lower() if item.recipients else ""
        mid = str(item.message["Message-ID"] or "")
        if rcpt not in lead_set:
            team += 1  # notices and escalations to the team are not part of the cadence
            continue
        key = message_key(mid)
        if key in first and any(first[key] <= death <= first[key] + window for death in deaths):
            gap = min(death - first[key] for death in deaths if death >= first[key])
            in_window.append(
                f"Message-ID <{key}> accepted again {at - first[key]:.1f} s later: "
                f"a worker was killed {gap * 1000:.0f} ms after its first 250"
            )
            continue
        first.setdefault(key, at)
        lead_of[key] = rcpt
        row = rows.get(key)
        step = steps.index(row.step) + 1 if row is not None and row.step in steps else 0
        arrivals[rcpt].append(Arrival(at, rcpt, step, mid))
        per_id[key] += 1
    result = Tally(arrivals, team, in_window=in_window)
    for mid, count in per_id.items():
        if count > 1:
            after = [death - first[mid] for death in deaths if death >= first[mid]]
            killed = f"the next SIGKILL came {min(after) * 1000:.0f} ms after its first 250" if after else "no SIGKILL after its first 250"
            result.duplicates.append(f"{lead_of[mid]}: Message-ID <{mid}> accepted {count} times; {killed}")
    for lead, items in sorted(arrivals.items()):
        items.sort(key=lambda a: a.at)
        result.unmapped += [f"{lead}: {a.message_id} is not in the outbox" for a in items if a.step == 0]
        known = [a for a in items if a.step]
        distinct: dict[int, set[str]] = {}
        for a in known:
            distinct.setdefault(a.step, set()).add(message_key(a.message_id))
        for step, ids in sorted(distinct.items()):
            if len(ids) > 1:
                result.duplicates.append(
                    f"{lead}: step {step} ({steps[step - 1]}) accepted as {len(ids)} different messages"
                )
        highest = 0
        for a in known:
            if a.step < highest:
                result.out_of_order.append(f"{lead}: step {a.step} accepted after step {highest}")
            highest = max(highest, a.step)
        answer = answered.get(lead)
        if answer is not None:
            late = [a for a in items if a.at > answer + grace]
            result.after_answer += [
                f"{lead}: step {a.step or '?'} accepted {a.at - answer:.1f} s after the answer" for a in late
            ]
        got = set(distinct)
        if answer is None:
            lacking = [s for s in range(1, len(steps) + 1) if s not in got]
        else:
            lacking = [s for s in range(1, max(got, default=1) + 1) if s not in got]
        if lacking:
            result.missing.append(
                f"{lead}: never got step(s) {', '.join(map(str, lacking))}{' (answered)' if answer is not None else ''}"
            )
    return result


def timelines(
    result: Tally,
    answers: dict[str, Answer],
    plan: dict[str, str],
    people: dict[str, Person],
    t0: float,
    steps: tuple[str, ...],
    rows: dict[str, OutRow],
    only: set[str] | None = None,
) -> str:
    """Per lead, in time order: what the SMTP server accepted and when the answer was APPENDed; then
    what its outbox still holds unsent."""
    lines = []
    for lead in sorted(result.arrivals, key=lambda e: (plan.get(e, "silent"), e)):
        if only is not None and lead not in only:
            continue
        events: list[tuple[float, str]] = [
            (a.at, f"accepted  step {a.step} {steps[a.step - 1] if a.step else '(not in outbox)'}")
            for a in result.arrivals[lead]
        ]
        answer = answers.get(lead)
        if answer is not None and answer.appended_at is not None:
            events.append((answer.appended_at, f"APPENDed  {answer.kind}"))
        elif answer is not None:
            events.append((answer.due, f"never APPENDed {answer.kind}: {answer.error}"))
        lines.append(f"{lead}  owner {people[lead].owner}  plan: {plan.get(lead, 'silent')}")
        lines += [f"    +{at - t0:6.1f}s  {what}" for at, what in sorted(events)]
        lines += [
            f"    outbox    {r.describe(t0)}" for r in rows.values() if r.recipient == lead and r.status != "sent"
        ]
    return "\n".join(lines)


def leads_in(messages: Iterable[str]) -> set[str]:
    return {m.split(":", 1)[0] for m in messages}


def phase_summary(phases: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) or "none"


def make_root() -> Path:
    """A private directory the `postgres` user can reach (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="outreach-chaos-"))
    root.chmod(0o755)
    return root


def per_role(counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for name, n in counts.items():
        total[name.rsplit("-", 1)[0]] += n
    return dict(total)
