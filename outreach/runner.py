"""The scheduler loop, and the embedded runner (scheduler + in-process Dramatiq workers in one process)."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from sqlalchemy import func, select

from outreach.db.models import Enrollment, Message, Task
from outreach.db.session import transaction
from outreach.logs import outage
from outreach.scheduler import (
    SCHEDULED,
    UNANSWERED,
    TickResult,
    escalate_unanswered,
    relay,
    tick,
)
from outreach.service import App

log = logging.getLogger(__name__)

GC_YOUNG = 10_000  # allocations between two collections of the youngest generation (Python's default: 700)


def tune_collector() -> None:
    """For a long-running service process, once its start-up is done. What start-up made (modules,
    the workspace, the classifier's tables) is frozen out of the cycle collector's scans, and the
    youngest generation is collected every 10,000 allocations instead of 700. Reading 5,000 new
    messages spent about a twelfth of its time in the collector before, a hundredth after."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, oldest)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C (SIGINT) set `stop`: the round under way ends, then the service stops in
    order. From the main thread, once the service is up."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())


def start_readers(app: App) -> None:
    """Start the poller's reading worker processes now, from the main thread, with SIGINT ignored
    while they are made. A terminal's Ctrl-C goes to every process of its group; an ignored signal
    stays ignored in a child, from its first instruction (Python then sets no KeyboardInterrupt
    handler), so the workers leave it to this process, which stops them in order. Nothing when no
    mailbox is read over IMAP."""
    if not any(box.imap for box in app.settings.workspace.mailboxes):
        return
    from outreach.mail import intake

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        intake.shared().start()
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_readers() -> None:
    """End the reading worker processes now, once the pollers have stopped: they hold nothing a
    poller waits for, and one still starting (importing the classifier takes seconds on a busy
    machine) would otherwise hold the exit until it is done. They are this process's only
    multiprocessing children."""
    import multiprocessing

    from outreach.mail import intake

    for child in multiprocessing.active_children():
        child.terminate()
    intake.shared().close()


@dataclass(frozen=True)
class StepResult:
    tick: TickResult
    enqueued: list[int]


def prepare(app: App) -> None:
    """Check the settings, mirror the team and store the current sequences (new versions carry enrollments over)."""
    _ = app.settings.secret_key  # fail at start, not at the first message
    with transaction(app.sessions) as session:
        app.sync_team(session)
        app.sync_sequences(session)


def step(app: App, enqueue: Callable[[list[int]], object], *, now: dt.datetime | None = None) -> StepResult:
    """One round: do what is due, then hand due messages to the broker, in batches per mailbox."""
    now = now or app.clock.now()
    result = TickResult()
    ids: list[int] = []
    escalate_unanswered(app, now=now)  # replies nobody answered in time: to the manager, with their notices
    while True:  # a tick takes a batch of due enrollments; their messages go out while the next is planned
        more = tick(app, now=now)
        result.enrollments += more.enrollments
        result.messages.extend(more.messages)
        result.tasks += more.tasks
        result.revisits += more.revisits
        while handed := relay(app, enqueue, now=now):
            ids.extend(handed)
        if not more.enrollments:
            break
    return StepResult(tick=result, enqueued=ids)


def next_wakeup(app: App) -> dt.datetime | None:
    """When something is next due: an enrollment's next action or a message's next attempt."""
    with app.sessions() as session:
        a = session.scalar(select(func.min(Enrollment.next_action_at)).where(Enrollment.phase.in_(SCHEDULED)))
        b = session.scalar(select(func.min(Message.not_before)).where(Message.direction == "out", Message.status.in_(("planned", "sending"))))
        c = session.scalar(select(func.min(Task.due_at)).where(*UNANSWERED))
    times = [t for t in (a, b, c) if t is not None]
    from outreach.clock import ensure_utc

    return ensure_utc(min(times)) if times else None


IDLE_LINE = 60.0  # seconds: a scheduler with nothing to do says so this often, so it never looks hung


def run_scheduler(app: App, enqueue: Callable[[list[int]], object], stop: threading.Event, *, interval: float = 5.0) -> None:
    prepare(app)
    log.info("scheduler started (a round every %.1f s)", interval)
    last_line = 0.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            done = step(app, enqueue)
        except Exception as exc:  # a failed round is logged and the loop goes on; the database holds the truth
            reason = outage(exc)
            if reason is None:
                log.exception("scheduler round failed; next round in %.1f s", interval)
            else:
                log.warning("scheduler round failed: %s; next round in %.1f s", reason, interval, extra={"event": "round-failed", "reason": reason})
        else:
            took = time.monotonic() - started
            busy = bool(done.tick.enrollments or done.enqueued)
            if busy or started - last_line >= IDLE_LINE:
                last_line = started
                log.info(
                    "round: %d enrollment(s) due, %d message(s) planned, %d handed to the broker, %d task(s), %d revisit(s) in %.0f ms",
                    done.tick.enrollments, len(done.tick.messages), len(done.enqueued), done.tick.tasks, done.tick.revisits, took * 1000,
                    extra={"event": "round", "enrollments": done.tick.enrollments, "planned": len(done.tick.messages), "handed": len(done.enqueued),
                           "tasks": done.tick.tasks, "revisits": done.tick.revisits, "ms": round(took * 1000, 1)},
                )
        stop.wait(interval)


def embedded_worker(broker: dramatiq.Broker, threads: int = 4) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    return worker
