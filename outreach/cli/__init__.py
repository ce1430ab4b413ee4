"""The `outreach` command.

Exit codes: 0 done; 1 failed; 2 bad input (a file, an argument) and nothing was changed;
3 not found; 4 conflicts with the current state (e.g. already paused).

One module a group of commands; each imports what they share from `_common`, and this module
puts them together in the order `outreach --help` lists them.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from outreach.cli import check, crm, db, demo, leads, sequences, services, status
from outreach.cli._common import set_log_format

__all__ = ["app", "main"]

app = typer.Typer(
    help="Email follow-up sequences that stop the moment a person answers.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    log_format: Annotated[str, typer.Option("--log-format", envvar="OUTREACH_LOG_FORMAT", help="How the long-running commands (run, scheduler, poll, serve) log: text or json.")] = "text",
) -> None:
    set_log_format(log_format)


for command in (
    sequences.preview,
    leads.enroll,
    leads.unenroll,
    leads.pause,
    leads.resume,
    status.status,
    demo.demo,
    services.run,
    services.scheduler,
    services.serve,
    services.poll,
    check.check,
    crm.report,
    crm.purge,
):
    app.command()(command)

app.add_typer(sequences.sequences_app, name="sequences")
app.add_typer(leads.leads_app, name="leads")
app.add_typer(db.db_app, name="db")
app.add_typer(crm.tasks_app, name="tasks")
app.add_typer(crm.lead_app, name="lead")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app(prog_name="outreach")
