"""Multipart mail whose boundary is missing from its body, or other than the one declared: its
parts are still found, so a reply's new text and a bounce's report are read as from sound mail."""

from __future__ import annotations

import base64
import logging
import quopri

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.mail.inbound import Kind, classify

SENTENCES = ["Yes, Tuesday at 10 works for me.", "Gern, schicken Sie mir das Angebot.", "火曜日の10時で大丈夫です。",
             "Café at noon? Bring the numbers."]
QUOTE = "On Mon, 3 Jun 2024 at 10:00, Asha Rao <asha@ours.example> wrote:\n> Hi Ben, shall we talk?\n"


def _encoded(text: str, encoding: str) -> str:
    data = text.encode("utf-8")
    if encoding == "base64":
        return base64.encodebytes(data).decode("ascii")
    if encoding == "quoted-printable":
        return quopri.encodestring(data).decode("ascii")
    return text


def _part(kind: str, text: str, encoding: str) -> str:
    return f"Content-Type: text/{kind}; charset=utf-8\nContent-Transfer-Encoding: {encoding}\n\n{_encoded(text, encoding)}\n"


def _body(parts: list[str], used: str, *, closed: bool) -> str:
    return "".join(f"--{used}\n{part}" for part in parts) + (f"--{used}--\n" if closed else "")


def _damaged(head: str, subtype: str, body: str, declared: str | None, *, crlf: bool = False) -> bytes:
    boundary = f'; boundary="{declared}"' if declared is not None else ""
    data = f"{head}MIME-Version: 1.0\nContent-Type: multipart/{subtype}{boundary}\n\n{body}"
    return (data.replace("\n", "\r\n") if crlf else data).encode("utf-8")


REPLY_HEAD = ("From: Ben Lee <ben.lee@client.example>\nTo: asha@ours.example\nSubject: Re: Our proposal\n"
              "Message-ID: <answer-1@client.example>\nIn-Reply-To: <proposal-1@ours.example>\n")
REPORT_HEAD = "From: Mail System <system@mx.client.example>\nReturn-Path: <>\nTo: asha@ours.example\nSubject: Delivery report\n"
DSN = ("Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.client.example\n\n"
       "Final-Recipient: rfc822; ben.lee@client.example\nAction: failed\nStatus: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\n")


@pytest.mark.parametrize("declared", ["AAA", None], ids=["another-boundary", "no-boundary"])
def test_a_reply_whose_boundary_is_not_in_its_body_is_read_from_its_text_part(declared: str | None) -> None:
    text = f"{SENTENCES[3]}\n\n{QUOTE}"
    body = _body([_part("plain", text, "quoted-printable"), _part("html", f"<p>{SENTENCES[3]}</p>", "7bit")], "BBB", closed=True)
    result = classify(_damaged(REPLY_HEAD, "alternative", body, declared))
    assert (result.kind, result.new_text) == (Kind.REPLY, SENTENCES[3])


def test_a_report_whose_boundary_is_not_in_its_body_is_read_from_its_delivery_status() -> None:
    body = _body([_part("plain", "Your message could not be delivered.", "7bit"), DSN], "r2", closed=True)
    result = classify(_damaged(REPORT_HEAD, "report; report-type=delivery-status", body, "r1"))
    assert (result.kind, result.status, result.cause, result.recipients) == (Kind.BOUNCE, "4.2.2", "mailboxfull", ("ben.lee@client.example",))
    assert result.evidence["detector"] == "rfc3464"


def test_a_damaged_multipart_without_any_delimiter_is_read_as_its_text() -> None:
    result = classify(_damaged(REPLY_HEAD, "mixed", f"{SENTENCES[0]}\n\n{QUOTE}", "AAA"))
    assert (result.kind, result.new_text) == (Kind.REPLY, SENTENCES[0])


@st.composite
def damaged_replies(draw: st.DrawFn) -> tuple[bytes, str]:
    sentence = draw(st.sampled_from(SENTENCES))
    encoding = draw(st.sampled_from(["7bit", "8bit", "quoted-printable", "base64"]))
    parts = [_part("plain", f"{sentence}\n\n{QUOTE}", encoding)]
    if draw(st.booleans()):
        parts.append(_part("html", f"<p>{sentence}</p><blockquote>Hi Ben</blockquote>", draw(st.sampled_from(["7bit", "base64"]))))
    used = draw(st.sampled_from(["BBB", "=_Part_1_2.3", "----=_NextPart_000_0001", "b" * 70]))
    inner = _body(parts, used, closed=draw(st.booleans()))
    subtype = "alternative"
    if draw(st.booleans()):  # the damaged multipart inside a sound one, or inside another damaged one
        inner_declared = draw(st.sampled_from([used, "XYZ", None]))
        boundary = f'; boundary="{inner_declared}"' if inner_declared is not None else ""
        inner = _body([f"Content-Type: multipart/alternative{boundary}\n\n{inner}"], "outer", closed=draw(st.booleans()))
        subtype = "mixed"
        declared = draw(st.sampled_from(["outer", "other", None]))
    else:
        declared = draw(st.sampled_from(["other", None, used + "x"]))
    return _damaged(REPLY_HEAD, subtype, inner, declared, crlf=draw(st.booleans())), sentence


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_replies())
def test_no_damaged_multipart_raises_and_its_text_is_read(caplog: pytest.LogCaptureFixture, case: tuple[bytes, str]) -> None:
    data, sentence = case
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = classify(data)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # no rule raised
    assert result.kind is Kind.REPLY, result
    assert result.new_text == sentence, result.new_text


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["AAA", None, "--", ""]), st.sampled_from(["mixed", "report", "alternative", "digest"]))
def test_no_multipart_with_any_body_raises(body: bytes, declared: str | None, subtype: str) -> None:
    boundary = f'; boundary="{declared}"' if declared is not None else ""
    data = f"{REPLY_HEAD}Content-Type: multipart/{subtype}{boundary}\n\n".encode() + b"--BBB\nContent-Type: text/plain\n\n" + body
    result = classify(data)
    assert "error" not in result.evidence, result
