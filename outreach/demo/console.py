"""The demo on a console, for a person: a bar of simulated days, per day the emails sent and the
notable turns under them while it runs; then a table of the leads, the KPIs and where to look."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Self
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from outreach import crm
from outreach.demo.cast import DAYS, START
from outreach.demo.localmail import CATCH_ALL
from outreach.demo.outcomes import Happening
from outreach.demo.story import WORKER_THREADS, DemoResult, Setup
from outreach.sequences.calendar import zone

_REVISIT = re.compile(r"revisit (\d{4}-\d{2}-\d{2})")
_NOTABLE = {
    "reply": "reply",
    "meeting": "meeting",
    "auto-reply": "out of office",
    "resumed": "resumed",
    "bounce": "bounce",
    "unsubscribe": "opt-out",
    "send-cancelled": "cancelled",
    "owner-replied": "answered",
    "task-opened": "task",
    "outcome": "recorded",
    "escalated": "escalated",
    "dormant": "dormant",
    "revisit": "revisit",
    "completed": "finished",
}


class ConsoleWatcher:
    """The demo as it runs, for a person: a bar of simulated days, and per day the emails sent
    (counted by step) with the notable turns under it: answers, bounces, escalations ..."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("[dim]simulating[/] {task.description}"), BarColumn(), TextColumn("day {task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn(), console=console, transient=True)
        self.tz = ZoneInfo("UTC")
        self.start = START
        self._task = self.progress.add_task("", total=DAYS)
        self._day: dt.date | None = None
        self._buffer: list[Happening] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self.progress.stop()

    def started(self, setup: Setup) -> None:
        self.tz, self.start = zone(setup.timezone), setup.start
        enrolled = ", ".join(f"{count} in {name}" for name, count in sorted(setup.enrolled.items(), key=lambda item: -item[1]))
        self.console.print(f"[bold]outreach demo[/]: {(setup.end - setup.start).days} days of the real pipeline on a fast clock", highlight=False)
        for line in (
            f"  mail      LocalMail in this process: SMTP {setup.smtp}, IMAP {setup.imap}, maildirs in {setup.maildir}",
            f"  database  {setup.database}",
            f"  workers   Dramatiq, in-process broker, {WORKER_THREADS} threads; the IMAP poller reads every mailbox each round",
            f"  leads     {sum(setup.enrolled.values())} from examples/leads.csv: {enrolled}",
            f"  clock     {setup.start.astimezone(self.tz):%a %d %b %Y %H:%M} to {setup.end.astimezone(self.tz):%a %d %b %Y}; times below in {setup.timezone}",
            "",
        ):
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)
        self.progress.update(self._task, total=(setup.end - setup.start) / dt.timedelta(days=1))
        self.progress.start()

    def round(self, now: dt.datetime, happenings: list[Happening]) -> None:
        today = now.astimezone(self.tz).date()
        if self._day is not None and today != self._day:
            self._flush()
        self._day = today
        self._buffer.extend(happenings)
        self.progress.update(self._task, completed=(now - self.start) / dt.timedelta(days=1), description=f"{now.astimezone(self.tz):%a %d %b}")

    def _flush(self) -> None:
        by_day: dict[dt.date, list[Happening]] = {}
        for happening in self._buffer:
            by_day.setdefault(happening.at.astimezone(self.tz).date(), []).append(happening)
        self._buffer = []
        for day, happenings in sorted(by_day.items()):
            self._print_day(day, happenings)

    def _print_day(self, day: dt.date, happenings: list[Happening]) -> None:
        steps = Counter(h.data.get("step", "").split("@")[0] for h in happenings if h.kind == "email-sent" and h.to_lead)
        notable = [h for h in happenings if h.kind in _NOTABLE]
        if not steps and not notable:
            return
        count = sum(steps.values())
        sent = f"✉ {count} email{'s' if count != 1 else ''}: " + ", ".join(f"{step} ×{n}" if n > 1 else step for step, n in steps.most_common()) if count else ""
        self.console.print(f"[bold]{day:%a %d %b}[/]  {sent}", highlight=False)
        drafted = {h.lead for h in happenings if h.kind == "draft-saved"}
        for happening in notable:
            line = f"  {happening.at.astimezone(self.tz):%H:%M}  {_NOTABLE[happening.kind]:<13} {happening.lead}: {_detail(happening, happening.lead in drafted)}"
            self.console.print(line, markup=False, highlight=False, no_wrap=True, overflow="ellipsis")


def _detail(happening: Happening, drafted: bool) -> str:
    """One notable turn in a few words: what a manager wants to know of it."""
    data, kind = happening.data, happening.kind
    text = " ".join(happening.text.split())
    if kind == "reply":
        return f"“{text[:100]}{'…' if len(text) > 100 else ''}”"
    if kind == "meeting":
        return "accepted the meeting invitation (calendar reply)"
    if kind == "auto-reply":
        return f"away until {dt.date.fromisoformat(data['until']):%a %d %b}; sequence paused" if data.get("until") else "auto-reply; sequence paused"
    if kind == "resumed":
        return "the pause ended; the sequence goes on"
    if kind == "bounce":
        status = data.get("status") or ""
        return f"hard bounce {status} from the mail system; address suppressed" if data.get("hard") else f"soft bounce {status}; will be retried"
    if kind == "unsubscribe":
        return "asked to be removed; address suppressed, sequence stopped"
    if kind == "owner-replied" and data.get("response_seconds") is not None:
        return f"{happening.owner} answered after {data['response_seconds'] / 3600:.1f} h"
    if kind == "task-opened":
        return f"{happening.channel} task for {happening.owner}: {text}"
    if kind == "outcome":
        return f"{happening.owner} recorded {text}"
    if kind == "escalated" and drafted:
        return f"{text}; a personal note waits in the manager's Drafts"
    if kind == "dormant" and (revisit := _REVISIT.search(text)):
        return f"no answer; parked until the revisit on {dt.date.fromisoformat(revisit.group(1)):%a %d %b}"
    return text


def print_summary(console: Console, result: DemoResult) -> None:
    """The per-lead table, the KPIs, where to look, and how to run it for real."""
    _print_leads(console, result)
    _print_kpis(console, result.report)
    first = result.leads[0].email if result.leads else "EMAIL"
    mailbox = result.mailboxes[0] if result.mailboxes else ""
    url = result.database_url
    console.print("\n[bold]Look around[/] (the demo's mail servers have stopped; the files stay until the next run)", highlight=False)
    for line in (
        f"  database   {result.database}",
        f"             OUTREACH_DATABASE_URL={url} outreach status",
        f"             OUTREACH_DATABASE_URL={url} outreach lead show {first}",
        f"             OUTREACH_DATABASE_URL={url} outreach report",
        f"  mail       {result.maildir}: a maildir per mailbox, e.g. {result.maildir / mailbox / '.Sent'} (new/, cur/);",
        f"             what reached the leads is in {result.maildir / CATCH_ALL}",
        "",
        "This was the real pipeline on a fast clock. With your own outreach.yaml (your mail servers, your team,",
        "PostgreSQL), `outreach run` does the same in real time: scheduler, sending workers and IMAP poller.",
    ):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _print_leads(console: Console, result: DemoResult) -> None:
    table = Table(title=f"After {(result.end - result.start).days} days", title_justify="left", title_style="bold")
    table.add_column("lead", no_wrap=True)
    table.add_column("company", no_wrap=True, max_width=18, overflow="ellipsis")
    table.add_column("owner", no_wrap=True)
    table.add_column("sequence", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("emails", justify="right")
    table.add_column("what happened", ratio=1)
    for lead in result.leads:
        cells = (lead.name, lead.company, lead.owner.split()[0] if lead.owner else "", "\n→ ".join(dict.fromkeys(lead.sequences)), lead.status, str(lead.emails), lead.story)
        table.add_row(*(Text(cell) for cell in cells))  # lead data is text, never markup
    console.print()
    console.print(table)


def _print_kpis(console: Console, report: crm.Report) -> None:
    console.print("\n[bold]KPIs[/] (as `outreach report` shows them)")
    for kpi in report.kpis:
        value = kpi.shown(kpi.value)
        shown = "n/a" if value is None else f"{value:.1f} {kpi.shown_unit}"
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "·"}[kpi.met]
        target = f"target {kpi.target_text}" if kpi.target_text else "no target"
        console.print(f"  {mark} {kpi.name:<22} {shown:>8}  {target:<14} [dim]{kpi.basis}[/]", highlight=False)
    console.print("  " + " · ".join(f"{name} {count}" for name, count in report.counts.items()), highlight=False)
