"""The CRM commands of `outreach`: tasks, a lead's record and outcomes, the KPI report, retention,
erasure. The logic is in outreach.crm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from outreach import crm
from outreach.cli._common import WorkspaceOpt, local, open_app, out, reported
from outreach.sequences.calendar import zone

CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Also write it to this CSV file (UTF-8, comma-separated).")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Really delete; without it, only say what would go.")]

tasks_app = typer.Typer()
lead_app = typer.Typer(help="One lead's CRM record: show it, record an outcome, erase it.", no_args_is_help=True)


def _lead_cell(name: str, company: str, email: str) -> Text:
    who = name if name and name != email else ""
    return Text(", ".join(p for p in (who, company) if p) + (f" <{email}>" if email else ""))


# ---- tasks -----------------------------------------------------------------------------------------


@tasks_app.callback(invoke_without_command=True)
@reported
def tasks(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this person's tasks (their email, or name, from the team in outreach.yaml).")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only open tasks past their due time.")] = False,
    all_tasks: Annotated[bool, typer.Option("--all", help="Done and skipped tasks too.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """List manual tasks; mark them done or skipped.

    Calls, LinkedIn messages, reviews after an escalation, answers to write. Without a command:
    the open tasks by due date, in their owner's time zone, overdue ones marked.

    \b
    Examples:
      outreach tasks --owner priya@appneural.example --overdue
      outreach tasks done 12 --outcome "Spoke to Ananya; decision on Friday"
      outreach tasks skip 13 --reason "she answered by email"
    """
    if ctx.invoked_subcommand is not None:
        return
    with open_app(workspace) as application, application.sessions() as session:
        items = crm.list_tasks(application, session, owner=owner, overdue_only=overdue, include_closed=all_tasks)
    _show_tasks(items, all_tasks)


def _show_tasks(items: list[crm.TaskItem], closed_too: bool) -> None:
    if not items:
        out.print("no tasks" if closed_too else "no open tasks")
        return
    table = Table(box=None, pad_edge=False)
    for header in ("#", "due", "state", "channel", "lead", "owner"):
        table.add_column(header, no_wrap=True)
    table.add_column("title", overflow="fold")
    for item in items:
        state = Text("OVERDUE", style="bold red") if item.overdue else Text(item.status)
        due = item.due_at.astimezone(zone(item.zone)).strftime("%Y-%m-%d %a %H:%M %Z")
        table.add_row(str(item.id), due, state, item.channel, _lead_cell(item.lead_name, item.company, item.email), item.assignee, Text(item.title))
    out.print(table)
    late = sum(item.overdue for item in items)
    still_open = sum(item.status == crm.OPEN for item in items)
    out.print(f"{still_open} open, {late} overdue. Close one: outreach tasks done ID --outcome \"...\"  (or: outreach tasks skip ID)")


@tasks_app.command("done")
@reported
def tasks_done(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task's number, as `outreach tasks` shows it.")],
    outcome: Annotated[str, typer.Option("--outcome", "-o", help="What came of it; the key points in the lead's record.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Mark a task done, with its outcome. A sequence waiting for the task goes on.

    Example: outreach tasks done 12 --outcome "Spoke to Ananya; decision on Friday"
    """
    _finish(workspace, task_id, outcome, skipped=False)


@tasks_app.command("skip")
@reported
def tasks_skip(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task's number, as `outreach tasks` shows it.")],
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why it was not done.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Skip a task. A sequence waiting for the task goes on.

    Example: outreach tasks skip 13 --reason "she answered by email"
    """
    _finish(workspace, task_id, reason, skipped=True)


def _finish(workspace: Path | None, task_id: int, text: str | None, *, skipped: bool) -> None:
    with open_app(workspace) as application:
        finished = crm.finish_task(application, task_id, outcome=text, skipped=skipped)
    line = f"task #{finished.id} {finished.status}" + (f" for {finished.email}" if finished.email else "")
    if finished.sequence:
        line += f"; {finished.sequence} is {finished.phase}, next action {local(finished.next_action_at, finished.zone)}"
    out.print(line, markup=False)


# ---- one lead ----------------------------------------------------------------------------------------

EmailArg = Annotated[str, typer.Argument(help="The lead's email address.")]


@lead_app.command("show")
@reported
def lead_show(email: EmailArg, csv: CsvOpt = None, workspace: WorkspaceOpt = None) -> None:
    """The lead's CRM record: who, owner, status, next follow-up, sequences, and every interaction in order.

    Example: outreach lead show ananya.rao@acme.example --csv ananya.csv
    """
    with open_app(workspace) as application, application.sessions() as session:
        record = crm.lead_record(application, session, email)
    written = crm.write_timeline_csv(record, csv) if csv is not None else None
    _show_record(record)
    if csv is not None:
        out.print(f"wrote {written} row(s) to {csv}", markup=False)


def _show_record(record: crm.LeadRecord) -> None:
    headline = record.name + (f" — {record.title}" if record.title else "") + (f", {record.company}" if record.company else "")
    out.print(Text(f"{headline} <{record.email}>", style="bold"))
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_row("owner", Text(record.owner or "(none)"))
    facts.add_row("status", record.status)
    facts.add_row("next follow-up", local(record.next_follow_up_at, record.zone))
    for item in record.enrollments:
        last = f", last step {item.last_step}" if item.last_step else ""
        facts.add_row("sequence", f"{item.sequence} v{item.version}: {item.phase}{last}; next action {local(item.next_action_at, record.zone)}")
    out.print(facts)
    if not record.timeline:
        out.print("no interactions recorded")
        return
    table = Table("when", "channel", "kind", "key points", "status", box=None, pad_edge=False, title=f"timeline ({record.zone})", title_justify="left")
    for entry in record.timeline:
        table.add_row(local(entry.at, record.zone), entry.channel, entry.kind, Text(entry.key_points), entry.status)
    out.print(table)


@lead_app.command("mark")
@reported
def lead_mark(
    email: EmailArg,
    outcome: Annotated[crm.Outcome, typer.Argument(help="What happened.", case_sensitive=False)],
    note: Annotated[str | None, typer.Option("--note", "-n", help="Key points for the record.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record an outcome. won and lost also end the lead's running sequences, close its open tasks and close the lead.

    Example: outreach lead mark ananya.rao@acme.example meeting-booked --note "Demo on 3 Dec"
    """
    with open_app(workspace) as application:
        marked = crm.mark(application, email, outcome, note)
    stopped = f"; stopped {', '.join(marked.stopped)}" if marked.stopped else ""
    closed = f"; closed task(s) {', '.join(f'#{t}' for t in marked.closed_tasks)}" if marked.closed_tasks else ""
    out.print(f"{marked.email}: {marked.outcome.value} (status {marked.status}){stopped}{closed}", markup=False)


@lead_app.command("forget")
@reported
def lead_forget(email: EmailArg, yes: YesOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Erase a person: the lead and everything recorded about them (events, mail, tasks, threads, enrollments).

    The address stays suppressed (reason "forgotten"), so a later import never mails it again.
    Mail in the mailboxes themselves is not touched. Without --yes, only shows what would be erased.
    """
    with open_app(workspace) as application:
        erased = crm.forget(application, email, execute=yes)
    counts = ", ".join(f"{count} {label}" for label, count in erased.counts.items())
    if erased.done:
        out.print(f"erased {erased.email}: {counts}; the address stays suppressed ({erased.suppression})", markup=False)
    else:
        out.print(f"would erase {erased.email}: {counts}; the address would stay suppressed. Run again with --yes to erase.", markup=False)


# ---- report and retention --------------------------------------------------------------------------


@reported
def report(
    since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD (in the workspace's zone); default: all the records kept.")] = None,
    csv: CsvOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The KPIs with their targets, and the counts behind them.

    Lead KPIs follow the leads enrolled since the date and what came of them; mail counts and
    response times count what happened since then; tasks and CRM statuses are as they are now.
    A KPI whose denominator is 0 shows n/a.

    Example: outreach report --since 2026-01-01 --csv kpis.csv
    """
    with open_app(workspace) as application, application.sessions() as session:
        start = crm.parse_date(since, application.settings.workspace.timezone) if since is not None else None
        found = crm.report(application, session, since=start)
        zone = application.settings.workspace.timezone
    if csv is not None:
        crm.write_report_csv(found, csv)
    _show_report(found, zone)
    if csv is not None:
        out.print(f"wrote {csv}", markup=False)


def _show_report(found: crm.Report, zone: str) -> None:
    period = f"since {local(found.since, zone)}" if found.since else "all records kept"
    table = Table("KPI", "value", "target", "met", "from", box=None, pad_edge=False, title=f"KPIs, {period}", title_justify="left")
    for kpi in found.kpis:
        value = kpi.shown(kpi.value)
        shown = "n/a" if value is None else f"{value:.1f} {kpi.shown_unit}"
        met = Text("-") if kpi.met is None else Text("yes", style="green") if kpi.met else Text("no", style="red")
        table.add_row(kpi.name, shown, kpi.target_text or "-", met, kpi.basis)
    out.print(table)
    out.print(" · ".join(f"{name} {count}" for name, count in found.counts.items()))
    out.print("leads by CRM status: " + " · ".join(f"{status} {count}" for status, count in found.statuses.items()))
    if found.bounce_reasons:
        out.print("bounces by reason: " + " · ".join(f"{reason} {count}" for reason, count in found.bounce_reasons.items()))


@reported
def purge(
    older_than: Annotated[str, typer.Option("--older-than", help=f"Age of what goes: {crm.AGE_FORMS}.")],
    yes: YesOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Retention: delete the activity log, inbound mail and finished outbound mail older than a period.

    Suppressions are never deleted (they keep bounced and opted-out addresses from being mailed
    again); leads, enrollments and tasks stay. Without --yes, only shows what would be deleted.

    Example: outreach purge --older-than 12months --yes
    """
    age = crm.parse_age(older_than)
    with open_app(workspace) as application:
        done = crm.purge(application, age, execute=yes)
    counts = ", ".join(f"{count} {label}" for label, count in done.counts.items())
    before = local(done.cutoff, "UTC")
    if done.done:
        out.print(f"deleted what is older than {before}: {counts}; kept {done.suppressions} suppression(s)")
    else:
        out.print(f"would delete what is older than {before}: {counts}; {done.suppressions} suppression(s) stay. Run again with --yes to delete.")
