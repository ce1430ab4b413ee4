"""`outreach status`: where everything stands, per sequence, per lead with its planned timeline, and
the outbox and bounces behind them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.cli._common import (
    SequenceOpt,
    WorkspaceOpt,
    local,
    open_app,
    out,
    reported,
)
from outreach.crm import bounce_reasons, refusals_by_mailbox
from outreach.db.models import Enrollment, SequenceVersion
from outreach.errors import NotFound
from outreach.health import LATE, outbox
from outreach.scheduler import dead_letters
from outreach.service import App, PlannedItem


@reported
def status(
    lead: Annotated[str | None, typer.Option("--lead", "-l", help="One lead: its enrollments and planned timeline.")] = None,
    sequence: SequenceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Where everything stands: per sequence, or per lead with the planned timeline."""
    with open_app(workspace) as application, application.sessions() as session:
        if lead is None and sequence is None:
            table = Table("sequence", "phase", "enrollments")
            for name, phase, count in application.summary(session):
                table.add_row(name, phase, str(count))
            out.print(table)
            print_outbox(application, session)
            print_bounces(application, session)
            dead = dead_letters(session)
            if dead:
                out.print(f"[bold red]{len(dead)} message(s) failed[/] (dead letters):")
                for message in dead[:50]:
                    out.print(f"  #{message.id} {message.recipient} step {message.step_key}: {message.error}", soft_wrap=True, markup=False)
            return
        if sequence is not None:
            _known_sequence(application, session, sequence)
        rows = application.enrollments(session, email=lead, sequence=sequence)
        if lead is None:
            table = Table("lead", "company", "phase", "status", "last step", "next action")
            for enrollment in rows:
                state = enrollment.state
                table.add_row(enrollment.lead.email, enrollment.lead.company, enrollment.phase, enrollment.lead.status, state.get("last_step") or "-", local(enrollment.next_action_at, enrollment.lead.timezone or None))
            out.print(table)
            return
        if not rows:
            out.print(f"{lead} is not enrolled in anything")
        for enrollment in rows:
            print_timeline(application, session, enrollment)


def _known_sequence(application: App, session: Session, name: str) -> None:
    """A sequence some enrollment ran (stored), or one in the sequences folder."""
    stored = set(session.scalars(select(SequenceVersion.name).distinct()))
    if name in stored:
        return
    files = application.sequences()
    if name not in files:
        raise NotFound(f"no sequence {name!r}; known: {', '.join(sorted(stored | set(files))) or 'none'}")


def print_outbox(application: App, session: Session) -> None:
    """What reached the mail servers, what is in flight, and what is stuck."""
    now = application.clock.now()
    box = outbox(session, now)
    if not box.by_status:
        return
    counts = box.by_status
    out.print(
        f"outbox: {counts.get('sent', 0)} accepted by the mail servers ({box.sent_last_hour} in the last hour), "
        + ", ".join(f"{counts[s]} {s}" for s in ("drafted", "cancelled", "failed") if counts.get(s))
    )
    waiting = counts.get("planned", 0) - box.due.count
    out.print(f"in flight: {box.claimed} being sent, {box.due.count} due and waiting for a worker, {waiting} waiting for their time (window, cap, backoff, pause)")
    if box.abandoned.count:
        out.print(f"[bold red]stuck:[/] {box.abandoned.count} left in sending by a worker that stopped (lease over for {_ago(box.abandoned.age(now))}); a worker takes them after checking the Sent folder")
    if box.late.count:
        out.print(f"[bold red]stuck:[/] {box.late.count} due for more than {int(LATE.total_seconds() // 60)} min and not taken (oldest {_ago(box.late.age(now))}): are the workers and the broker running?")


def print_bounces(application: App, session: Session) -> None:
    """Bounces by reason, and those that said something about our own sending, per mailbox (all records kept)."""
    reasons = bounce_reasons(session, None)
    if not reasons:
        return
    out.print("bounces by reason: " + " · ".join(f"{reason} {count}" for reason, count in reasons.items()), markup=False)
    for mailbox, refused in refusals_by_mailbox(session, None).items():
        found = ", ".join(f"{count} {reason}" for reason, count in refused.items())
        out.print(f"refused for reasons about the sender, to {mailbox}: {found} (leads kept; a task each for their owner)", markup=False)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_timeline(application: App, session: Session, enrollment: Enrollment) -> None:
    lead = enrollment.lead
    who = lead.display_name
    company = f", {lead.company}" if lead.company else ""
    tz = lead.timezone or "(mailbox zone)"
    out.print(f"\n[bold]{who}{company}[/] <{lead.email}> · {enrollment.sequence_name} v{enrollment.sequence.version} · {enrollment.phase} · {lead.status} · {tz}")
    items = application.timeline(session, enrollment)
    if not items:
        out.print("  nothing planned")
        return
    rows = [_row(item) for item in items]
    headers = [f"when ({_zone_label(items[0].local)})", "step", "action", "thread", "subject / note", "from / for"]
    table = Table(box=None, pad_edge=False, show_edge=False)
    for index, header in enumerate(headers):
        widest = max(len(header), *(len(row[index]) for row in rows))
        if index == 4:
            table.add_column(header, overflow="ellipsis", no_wrap=True, max_width=72)
        else:
            table.add_column(header, no_wrap=True, min_width=min(widest, 40), overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _zone_label(when: dt.datetime) -> str:
    return when.tzname() or "local"


def _row(item: PlannedItem) -> list[str]:
    when = item.local.strftime("%Y-%m-%d %a %H:%M")
    thread = f"#{item.thread}" if item.thread else ""
    what = {"email": f"email {item.detail}", "task": f"task ({item.detail})"}.get(item.kind, item.detail)
    return [when, item.step, what, thread, item.subject, item.mailbox]
