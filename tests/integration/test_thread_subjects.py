"""A follow-up's subject: what the preview shows is what is sent, whatever prefixes the thread's first
subject carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from outreach.mail.subjects import reply_subject
from tests.pipeline import Pipeline, make_workspace
from tests.servers import SmtpServer

START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
LEAD = "ananya.rao@acme.example"
SEQUENCE = """name: angebot
mailbox: owner
timezone: UTC
window: {days: mon-sun, hours: "00:00-24:00"}
steps:
  - id: first
    template: angebot
  - id: second
    after: 1 day
    template: angebot_nachfassen
"""


def _template(subject: str, text: str) -> str:
    return f"{{% block subject %}}{subject}{{% endblock %}}\n{{% block text %}}{text}{{% endblock %}}\n"


def test_the_preview_shows_the_follow_up_subject_that_is_sent(tmp_path: Path, smtp_server: SmtpServer, stub_broker: Any) -> None:
    workspace = make_workspace(tmp_path / "ws", smtp_server, None)
    (workspace / "sequences" / "angebot.yaml").write_text(SEQUENCE)
    (workspace / "templates" / "angebot.j2").write_text(_template("AW: Angebot für {{ lead.company | default(\"Sie\") }}", "Guten Tag"))
    (workspace / "templates" / "angebot_nachfassen.j2").write_text(_template("(never used: a follow-up keeps the thread's subject)", "Nachgefasst"))
    pipe = Pipeline(workspace, f"sqlite:///{tmp_path / 'db.sqlite'}", START, stub_broker)
    try:
        pipe.app.import_leads(workspace / "examples" / "leads.csv")
        pipe.app.enroll("angebot", [LEAD])
        pipe.prepare()
        previews = [pipe.app.preview("angebot", step, LEAD).subject for step in ("first", "second")]
        pipe.run_until(START + dt.timedelta(days=3))
    finally:
        pipe.close()
    sent = [str(r.message["Subject"]) for r in smtp_server.received if r.recipients == [LEAD]]
    assert sent == previews
    assert sent[0].startswith("AW: Angebot für ")
    assert sent[1] == reply_subject(sent[0]) == f"Re: {sent[0][4:]}"
