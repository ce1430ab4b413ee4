"""`outreach demo`: sixty days of the real pipeline, played in well under a minute on one machine.

What runs is what runs in production: the scheduler's tick and relay, Dramatiq workers (an
in-process StubBroker with worker threads), SMTP into an in-process aiosmtpd, and the IMAP poller
reading the team's mailboxes from an in-process pymap (LocalMail). Two things are simulated.

- The clock: a FakeClock moved to whatever is due next (the scheduler's next wakeup, or the moment
  a person's email arrives), never more than a few hours at a time.
- The people. Leads read what reaches them (LocalMail's catch-all INBOX, where mail to outside
  addresses lands) and answer as people do, hours or days later and in their working day, with
  real emails put into the owner's INBOX: a reply, an out-of-office, a bounce report from the mail
  system, a request to be removed, a meeting acceptance, or nothing at all. Owners answer replies
  from their own mail client, which files a copy in Sent; the poller reads it for the response time.

Everything lands in one folder (var/demo unless told otherwise, wiped at the start): the SQLite
database, the maildirs, and the outreach.yaml that points the workspace's mailboxes at LocalMail.

The sending workers are the caller's to give (`run_demo(senders=...)`): the demo sits beside
`workers/`, above the library, and imports neither it nor anything that imports it.

    cast.py      the leads played, what each knows and has received, their working days
    people.py    the leads and owners acting: reading, answering, recording outcomes
    emails.py    the emails they write (replies, out-of-office, meeting acceptances, bounces)
    story.py     the stage and the loop that plays it
    outcomes.py  what happened, read back from the database
    console.py   the progress and the summary for a person
    localmail.py the mail system inside this process (pymap + aiosmtpd); _pymap.py its reaches into pymap
"""

from outreach.demo.cast import CAST, DAYS, START, Behaviour, Persona, Recorded
from outreach.demo.console import ConsoleWatcher, print_summary
from outreach.demo.outcomes import Happening, LeadOutcome
from outreach.demo.story import (
    DemoResult,
    Senders,
    Setup,
    StartSenders,
    Watcher,
    run_demo,
)

__all__ = [
    "CAST",
    "DAYS",
    "START",
    "Behaviour",
    "ConsoleWatcher",
    "DemoResult",
    "Happening",
    "LeadOutcome",
    "Persona",
    "Recorded",
    "Senders",
    "Setup",
    "StartSenders",
    "Watcher",
    "print_summary",
    "run_demo",
]
