"""The real corpus through the whole inbound path: every message is re-addressed into a thread we sent,
APPENDed to the owner's INBOX on Dovecot, read by the poller, classified, matched and recorded.
Precision and recall per class are printed with the results and held to the targets."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from outreach.db.models import InboundMail, Message
from outreach.mail.inbound import Kind, classify
from outreach.poller import poll_all
from tests import corpus
from tests.pipeline import Pipeline, make_workspace
from tests.servers import Dovecot, SmtpServer

START = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
REPLACED = {b"from", b"to", b"cc", b"message-id", b"in-reply-to", b"references"}
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@pytest.fixture
def pipeline(tmp_path: Path, smtp_server: SmtpServer, dovecot: Dovecot, stub_broker: Any) -> Iterator[Pipeline]:
    corpus.require()
    workspace = make_workspace(tmp_path / "ws", smtp_server, dovecot, save_sent=False)
    pipe = Pipeline(workspace, f"sqlite:///{tmp_path / 'corpus.sqlite'}", START, stub_broker)
    pipe.app.import_leads(workspace / "examples" / "leads.csv")
    pipe.app.enroll("bd-client-follow-up", None, all_leads=True, seed=2)
    pipe.prepare()
    pipe.run_until(START + dt.timedelta(days=2))  # every lead has had the intro
    yield pipe
    pipe.close()


def readdress(raw: bytes, headers: list[tuple[str, str]], *swaps: tuple[str, str]) -> bytes:
    """The message with our own From/To/Message-ID/threading headers in place of its own; the body
    untouched but for what a report says about the message it returns: the failed recipient
    becomes our lead, and its Message-ID ours."""
    split = _HEADER_END.search(raw)
    head, body = (raw[: split.start()], raw[split.start() :]) if split else (raw, b"\r\n\r\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in REPLACED
        if not skipping:
            kept.append(line)
    new = [f"{name}: {value}".encode() for name, value in headers]
    for old, replacement in swaps:
        body = re.sub(re.escape(old).encode(), replacement.encode(), body, flags=re.IGNORECASE)
        kept = [re.sub(re.escape(old).encode(), replacement.encode(), line, flags=re.IGNORECASE) for line in kept]
    return b"\r\n".join(new + kept) + body


def test_every_corpus_message_is_classified_as_labelled_through_imap(pipeline: Pipeline, dovecot: Dovecot, capsys: pytest.CaptureFixture[str]) -> None:
    with pipeline.app.sessions() as session:
        sent = [(m.recipient, m.sender, m.message_id) for m in session.scalars(select(Message).where(Message.status == "sent", Message.kind == "sequence").order_by(Message.id))]
    assert len(sent) == 12
    cases = corpus.all_cases()
    expected: dict[str, corpus.Case] = {}
    blind: set[str] = set()  # reports that name neither the recipient nor the message: nothing ties them to a thread
    clients: dict[str, Any] = {}
    try:
        for n, case in enumerate(cases):
            lead, owner, ours = sent[n % len(sent)]
            raw = case.raw()
            key = f"<corpus-{n}-{uuid.uuid4().hex[:8]}@test.example>"
            if case.expected in (Kind.BOUNCE, Kind.COMPLAINT, Kind.DELIVERY_NOTICE):
                # a report keeps its sender; the address it is about becomes our lead's
                found = classify(raw)
                sender = re.search(rb"^From:[^\r\n]*", raw, re.MULTILINE | re.IGNORECASE)
                headers = [("From", sender.group(0)[5:].decode("latin-1").strip() if sender else "MAILER-DAEMON@mx.example.net"), ("To", owner), ("Message-ID", key)]
                swaps = [(found.recipients[0], lead)] if found.recipients else []
                if found.original_message_id:
                    swaps.append((found.original_message_id, ours))
                if not swaps:
                    blind.add(key)
                raw = readdress(raw, headers, *swaps)
            else:
                raw = readdress(raw, [("From", f"Lead <{lead}>"), ("To", owner), ("Message-ID", key), ("In-Reply-To", ours), ("References", ours)])
            if owner not in clients:
                clients[owner] = dovecot.client(owner)
            clients[owner].append("INBOX", raw)
            expected[key] = case
    finally:
        for client in clients.values():
            client.logout()

    poll_all(pipeline.app)
    with pipeline.app.sessions() as session:
        rows = {r.message_id: r for r in session.scalars(select(InboundMail))}
    got = {key: rows[key].kind if key in rows else "unrelated" for key in expected}
    quarantined = [key for key, kind in got.items() if kind == "quarantined"]
    assert not quarantined

    table, _ = _scores(expected, got)
    tied = {key: case for key, case in expected.items() if key not in blind}
    tied_table, scores = _scores(tied, got)
    hard = [(case.hard, rows[key].evidence.get("hard")) for key, case in expected.items() if case.hard is not None and got[key] == "bounce"]
    hard_right = sum(1 for want, have in hard if want == have) / len(hard)
    replies = [rows[key] for key, case in expected.items() if case.expected is Kind.REPLY and got[key] == "reply"]
    with capsys.disabled():
        print(f"\n\nthe corpus through Dovecot and the poller: all {len(expected)} messages\n{table}")
        print(f"\nthe {len(tied)} that can be tied to a thread ({len(blind)} reports name neither the recipient nor the message)\n{tied_table}")
        print(f"bounces hard/soft right: {hard_right:.1%} of {len(hard)}\n")
    assert scores["bounce"][1] >= 0.99 and hard_right >= 0.95
    for kind in ("auto_reply", "reply"):
        assert scores[kind][0] >= 0.97 and scores[kind][1] >= 0.97, (kind, scores[kind])
    assert replies and all(r.matched_by == "headers" for r in replies), "replies with intact threading headers: matched 100 %"


def _scores(expected: dict[str, corpus.Case], got: dict[str, str]) -> tuple[str, dict[str, tuple[float, float]]]:
    want = Counter(case.expected.value for case in expected.values())
    found = Counter(got[key] for key in expected)
    right = Counter(case.expected.value for key, case in expected.items() if got[key] == case.expected.value)
    lines = [f"{'class':<16} {'expected':>8} {'found':>6} {'right':>6} {'precision':>10} {'recall':>7}"]
    scores = {}
    for kind in sorted(set(want) | set(found)):
        precision = right[kind] / found[kind] if found[kind] else 1.0
        recall = right[kind] / want[kind] if want[kind] else 1.0
        scores[kind] = (precision, recall)
        lines.append(f"{kind:<16} {want[kind]:>8} {found[kind]:>6} {right[kind]:>6} {precision:>10.1%} {recall:>7.1%}")
    return "\n".join(lines), scores
