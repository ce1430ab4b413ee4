"""LocalMail (pymap + aiosmtpd in this process) behaves like a mail provider for what outreach uses:
SMTP delivery into INBOX, APPEND and SEARCH HEADER, stable UIDs, IDLE, restarts, and ImapStore."""

from __future__ import annotations

import datetime as dt
import gc
import smtplib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from outreach.config import ImapConfig, ServerConfig
from outreach.demo.localmail import CATCH_ALL, LocalMail
from outreach.mail.imap import ImapStore
from outreach.mail.transports.smtp import SmtpTransport
from tests.pipeline import MAILBOXES, PASSWORD, PASSWORD_ENV

PRIYA, RAHUL = "priya@appneural.example", "rahul@appneural.example"
USERS = {PRIYA: "priya-secret", RAHUL: "rahul-secret"}
UTC = dt.UTC
POLICY = SMTP.clone(max_line_length=998)  # long headers on one line, as outreach writes them


def message(mid: str, *, sender: str = "lead@acme.example", to: str = PRIYA, in_reply_to: str = "", references: str = "") -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Re: a subject long enough that a re-folding server would have to fold it ({mid})"
    msg["Message-ID"] = mid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content("Thanks, let's talk.\n")
    return msg


def raw(mid: str, **kwargs: str) -> bytes:
    return message(mid, **kwargs).as_bytes()


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[LocalMail]:
    with LocalMail(tmp_path / "mail", USERS) as server:
        yield server


def imap(mail: LocalMail, user: str = PRIYA) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=mail.imap_port, ssl=False, timeout=10)
    client.login(user, USERS[user])
    return client


def send(mail: LocalMail, data: bytes, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10) as smtp:
        smtp.sendmail("lead@acme.example", recipients, data)


def fetch_all(client: IMAPClient, folder: str) -> dict[int, bytes]:
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    return {uid: data[b"RFC822"] for uid, data in client.fetch(uids, ["RFC822"]).items()} if uids else {}


def test_each_user_logs_in_to_inbox_sent_and_drafts(mail: LocalMail) -> None:
    with imap(mail) as client:
        assert {name for _, _, name in client.list_folders()} == {"INBOX", "Sent", "Drafts"}
    bad = IMAPClient("127.0.0.1", port=mail.imap_port, ssl=False, timeout=10)
    with pytest.raises(LoginError):
        bad.login(PRIYA, "wrong")
    bad.shutdown()


def test_smtp_mail_lands_byte_for_byte_in_the_recipients_inbox(mail: LocalMail) -> None:
    data = raw("<m1@acme.example>", to=f"{PRIYA}, {RAHUL}, someone@elsewhere.example")
    send(mail, data, [PRIYA, RAHUL, "Someone@Elsewhere.example"])

    for user in (PRIYA, RAHUL):
        with imap(mail, user) as client:
            assert list(fetch_all(client, "INBOX").values()) == [data]
        assert mail.messages(user) == [data]
    assert mail.messages(CATCH_ALL) == [b"X-Original-To: someone@elsewhere.example\r\n" + data]


def test_the_projects_smtp_transport_delivers_into_pymap(mail: LocalMail) -> None:
    transport = SmtpTransport(ServerConfig(host="127.0.0.1", port=mail.smtp_port, security="none"), timeout=10)
    try:
        for i in range(3):
            transport.send(message(f"<t{i}@appneural.example>", sender=RAHUL), RAHUL, [PRIYA])
    finally:
        transport.close()
    assert [message_from_bytes(m)["Message-ID"] for m in mail.messages(PRIYA)] == [f"<t{i}@appneural.example>" for i in range(3)]


def test_append_to_sent_then_search_header_message_id(mail: LocalMail) -> None:
    data = raw("<sent-1@appneural.example>", sender=PRIYA, to="lead@acme.example")
    with imap(mail) as client:
        client.append("Sent", data, flags=[b"\\Seen"], msg_time=dt.datetime(2026, 11, 23, 9, 30, tzinfo=UTC))
        client.append("Sent", raw("<sent-2@appneural.example>", sender=PRIYA))
        client.select_folder("Sent", readonly=True)
        uids = client.search(["HEADER", "Message-ID", "<sent-1@appneural.example>"])
        assert len(uids) == 1
        fetched = client.fetch(uids, ["RFC822", "FLAGS", "INTERNALDATE"])[uids[0]]
        assert fetched[b"RFC822"] == data
        assert b"\\Seen" in fetched[b"FLAGS"]
        assert fetched[b"INTERNALDATE"].astimezone(UTC) == dt.datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
        assert client.search(["HEADER", "Message-ID", "<nothing@appneural.example>"]) == []
    assert mail.messages(PRIYA, "Sent")[0] == data


def test_search_or_header_in_reply_to_references_and_from(mail: LocalMail) -> None:
    mine = "<intro@appneural.example>"
    send(mail, raw("<r1@acme.example>", in_reply_to=mine, references=mine), [PRIYA])
    send(mail, raw("<r2@acme.example>", references=f"<older@appneural.example> {mine}"), [PRIYA])  # References only
    send(mail, raw("<r3@acme.example>", in_reply_to="<other@appneural.example>"), [PRIYA])
    send(mail, raw("<r4@acme.example>", sender="someone@else.example", in_reply_to=mine), [PRIYA])
    with imap(mail) as client:
        client.select_folder("INBOX", readonly=True)
        thread = ["OR", ["HEADER", "In-Reply-To", mine], ["HEADER", "References", mine]]
        assert client.search(thread) == [1, 2, 4]
        assert client.search(["FROM", "lead@acme.example", thread]) == [1, 2]
        assert client.search(["HEADER", "In-Reply-To", "intro@appneural"]) == [1, 4]  # a substring, as RFC 3501 says


def test_uidvalidity_and_uids_are_stable_and_increasing_across_connections(mail: LocalMail) -> None:
    with imap(mail) as client:
        first = client.select_folder("INBOX")[b"UIDVALIDITY"]
    send(mail, raw("<a@acme.example>"), [PRIYA])
    send(mail, raw("<b@acme.example>"), [PRIYA])
    with imap(mail) as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] == first
        before = fetch_all(client, "INBOX")
    send(mail, raw("<c@acme.example>"), [PRIYA])
    with imap(mail) as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] == first
        after = fetch_all(client, "INBOX")
    assert list(before) == [1, 2]
    assert {uid: after[uid] for uid in before} == before
    assert list(after) == [1, 2, 3]


def test_idle_is_offered_and_wakes_up_on_smtp_delivery(mail: LocalMail) -> None:
    with imap(mail) as client:
        assert b"IDLE" in client.capabilities()
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        send(mail, raw("<wake@acme.example>"), [PRIYA])
        responses = client.idle_check(timeout=10)
        waited = time.monotonic() - started
        client.idle_done()
    assert (1, b"EXISTS") in responses
    assert waited < 5


def test_a_restart_on_the_same_root_keeps_messages_uids_and_uidvalidity(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    data = raw("<kept@acme.example>")
    with LocalMail(root, USERS) as mail:
        send(mail, data, [PRIYA])
        with imap(mail) as client:
            validity = client.select_folder("INBOX")[b"UIDVALIDITY"]
            client.append("Sent", raw("<sent@appneural.example>", sender=PRIYA))
    with LocalMail(root, USERS) as mail:
        with imap(mail) as client:
            assert client.select_folder("INBOX")[b"UIDVALIDITY"] == validity
            assert fetch_all(client, "INBOX") == {1: data}
            client.select_folder("Sent", readonly=True)
            assert client.search(["HEADER", "Message-ID", "<sent@appneural.example>"]) == [1]
        send(mail, raw("<next@acme.example>"), [PRIYA])
        with imap(mail) as client:
            assert list(fetch_all(client, "INBOX")) == [1, 2]


def test_stop_closes_open_connections_and_leaves_no_thread(tmp_path: Path) -> None:
    mail = LocalMail(tmp_path / "mail", USERS).start()
    idler = imap(mail)
    idler.select_folder("INBOX")
    idler.idle()
    smtp = smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10)
    smtp.ehlo()
    mail.stop()
    mail.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("localmail")]
    with pytest.raises((OSError, smtplib.SMTPServerDisconnected)):
        smtp.noop()
    smtp.close()
    idler.shutdown()
    gc.collect()  # any transport the server left open would warn now, and warnings fail the suite
    with pytest.raises(RuntimeError):
        _ = mail.imap_port


def test_a_root_on_another_filesystem_than_the_temp_dir_serves_and_keeps_its_mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pymap renames each index file into place from where it was written: beside it, not in the temp dir."""
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    monkeypatch.setattr(tempfile, "tempdir", str(other))
    with LocalMail(tmp_path / "mail", USERS) as mail:
        send(mail, raw("<far@acme.example>"), [PRIYA])
        with imap(mail) as client:
            assert list(fetch_all(client, "INBOX")) == [1]
    with LocalMail(tmp_path / "mail", USERS) as mail, imap(mail) as client:
        assert list(fetch_all(client, "INBOX")) == [1]
    assert not list((tmp_path / "mail").rglob("tmp-*")), "no temporary file is left behind"


# ImapStore, the project's own IMAP code, gives the same answers from pymap as from Dovecot.


@dataclass
class Server:
    name: str
    port: int
    into_inbox: Callable[[str, bytes], None]

    def store(self) -> ImapStore:
        config = ImapConfig(host="127.0.0.1", port=self.port, security="none", username=PRIYA, password_env=PASSWORD_ENV)
        return ImapStore(config, timeout=10)


@pytest.fixture(params=["pymap", "dovecot"])
def imap_server(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    if request.param == "dovecot":
        dovecot = request.getfixturevalue("dovecot")
        yield Server("dovecot", dovecot.port, lambda user, data: dovecot.append(user, "INBOX", data))
        return
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with LocalMail(tmp_path / "mail", {box: PASSWORD for box in MAILBOXES}) as mail:
        yield Server("pymap", mail.imap_port, lambda user, data: mail.deliver(data, [user]))


INTRO, FOLLOW_UP = "<intro@appneural.example>", "<follow-up@appneural.example>"


def test_imap_store_appends_to_sent_and_finds_it_there(imap_server: Server) -> None:
    store = imap_server.store()
    try:
        assert not store.sent_has(INTRO)
        store.append_sent(raw(INTRO, sender=PRIYA, to="lead@acme.example"), dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        assert store.sent_has(INTRO)
        assert not store.sent_has(FOLLOW_UP)
    finally:
        store.close()


def test_imap_store_finds_replies_by_thread_and_sender(imap_server: Server) -> None:
    store = imap_server.store()
    try:
        assert store.replies([INTRO, FOLLOW_UP], "lead@acme.example") == []
        imap_server.into_inbox(PRIYA, raw("<noise@acme.example>", in_reply_to="<unrelated@appneural.example>"))
        imap_server.into_inbox(PRIYA, raw("<other@else.example>", sender="other@else.example", in_reply_to=INTRO))
        imap_server.into_inbox(PRIYA, raw("<reply@acme.example>", references=f"<older@acme.example> {FOLLOW_UP}"))
        found = store.replies([INTRO, FOLLOW_UP], "lead@acme.example")
    finally:
        store.close()
    assert [(f.folder, f.uid, f.message_id, f.sender) for f in found] == [("INBOX", 3, "<reply@acme.example>", "lead@acme.example")]
    assert found[0].subject.startswith("Re: a subject long enough")
