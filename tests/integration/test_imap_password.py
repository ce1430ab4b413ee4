"""A mailbox password beyond ASCII logs in to a real Dovecot: the poller and the Sent-folder check."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from outreach.config import load_settings
from outreach.mail.imap import ImapStore
from tests.cli_helpers import run
from tests.pipeline import MAILBOXES, PASSWORD_ENV, make_workspace
from tests.servers import Dovecot, SmtpServer

PASSWORD = "pässwörd-日本"


@pytest.fixture
def utf8_dovecot(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    """The Dovecot fixture's server with every user's password beyond ASCII (its passwd-file is
    read again when it changes)."""
    dovecot.users = {box: PASSWORD for box in MAILBOXES}
    (dovecot.root / "users").write_text("".join(f"{user}:{{PLAIN}}{password}\n" for user, password in dovecot.users.items()), encoding="utf-8")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return dovecot


def _deliver(server: Dovecot, user: str) -> None:
    message = EmailMessage()
    message["From"] = "someone@example.net"
    message["To"] = user
    message["Subject"] = "Hello"
    message["Message-ID"] = "<hello-1@example.net>"
    message.set_content("Not about any lead.")
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    try:
        client.plain_login(user, PASSWORD)
        client.append("INBOX", message.as_bytes())
    finally:
        client.logout()


def test_a_non_ascii_password_logs_in_and_the_mailbox_is_polled(tmp_path: Path, smtp_server: SmtpServer, utf8_dovecot: Dovecot) -> None:
    workspace = make_workspace(tmp_path / "ws", smtp_server, utf8_dovecot)
    db = f"sqlite:///{tmp_path / 'poll.sqlite'}"
    first = run(workspace, "poll", "--once", db=db)  # every mailbox logged in to; the folders' cursors set
    assert first.exit_code == 0, first.output
    assert "Traceback" not in first.output
    for box in MAILBOXES:
        assert f"{box}: 0 new message(s)" in first.stdout, first.output

    _deliver(utf8_dovecot, MAILBOXES[0])
    second = run(workspace, "poll", "--once", db=db)

    assert second.exit_code == 0, second.output
    assert f"{MAILBOXES[0]}: 1 new message(s), none about our leads" in second.stdout, second.output


def test_the_sent_folder_check_logs_in_with_a_non_ascii_password(tmp_path: Path, smtp_server: SmtpServer, utf8_dovecot: Dovecot) -> None:
    workspace = make_workspace(tmp_path / "ws", smtp_server, utf8_dovecot)
    imap = load_settings(workspace).workspace.mailboxes[0].imap
    assert imap is not None
    store = ImapStore(imap, timeout=10)
    try:
        assert store.sent_has("<never-sent@appneural.example>") is False
    finally:
        store.close()
