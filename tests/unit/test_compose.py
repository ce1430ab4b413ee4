from __future__ import annotations

import datetime as dt
import random
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.utils import getaddresses

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from outreach.delivery import backoff
from outreach.errors import InputError
from outreach.mail.compose import Party, compose, make_message_id
from outreach.mail.templates import Rendered

WHEN = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))


def _message(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "sender": Party("priya@appneural.example", "Priya Sharma"),
        "recipient": Party("jane@example.com", "Jane Doe"),
        "message_id": "<b@appneural.example>",
        "date": WHEN,
        "subject": "Re: Your proposal",
        "in_reply_to": "<a@appneural.example>",
        "references": ["<root@appneural.example>", "<a@appneural.example>"],
        "unsubscribe_url": "https://outreach.example/u/token",
        "unsubscribe_mailto": "mailto:priya@appneural.example?subject=unsubscribe",
    }
    args.update(overrides)
    return compose(Rendered("s", "Hello Jane\n", "<p>Hello Jane</p>\n"), **args).as_bytes()  # type: ignore[arg-type]


def test_a_follow_up_carries_the_thread_and_one_click_unsubscribe() -> None:
    msg = message_from_bytes(_message(), policy=policy.default)
    assert msg["In-Reply-To"] == "<a@appneural.example>"
    assert msg["References"] == "<root@appneural.example> <a@appneural.example>"
    assert msg["List-Unsubscribe"] == "<https://outreach.example/u/token>, <mailto:priya@appneural.example?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] == "Tue, 24 Nov 2026 09:30:00 +0530"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert str(msg["From"]) == "Priya Sharma <priya@appneural.example>"


@pytest.mark.parametrize("name", ["Jane\r\nBcc: evil@example.net", "Jane\nX: y", "Jane\x00"])
def test_names_cannot_inject_headers(name: str) -> None:
    with pytest.raises(InputError, match="control characters"):
        _message(recipient=Party("jane@example.com", name))


def test_a_display_name_with_specials_is_quoted() -> None:
    msg = message_from_bytes(_message(recipient=Party("jane@example.com", 'Doe, Jane "JD"')), policy=policy.default)
    assert msg["To"].addresses[0].display_name == 'Doe, Jane "JD"'
    assert msg["To"].addresses[0].addr_spec == "jane@example.com"


def test_message_ids_are_unique_and_on_the_mailbox_domain() -> None:
    ids = {make_message_id("AppNeural.example") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.endswith("@appneural.example>") and i.startswith("<") for i in ids)


@given(st.integers(1, 50), st.randoms(use_true_random=False))
def test_backoff_grows_and_is_bounded(attempts: int, rng: random.Random) -> None:
    delay = backoff(attempts, rng)
    assert dt.timedelta(seconds=30) <= delay <= dt.timedelta(hours=1.2)
    if attempts < 7:
        assert delay < backoff(attempts + 1, random.Random(0)) * 1.3


def test_non_ascii_headers_are_encoded_words_folded_within_the_line_limit_and_read_back_intact() -> None:
    subject = "Re: Über den Vorschlag — " + " ".join(["bitte lesen"] * 12)
    raw = _message(subject=subject, sender=Party("priya@appneural.example", "Priya Śharma"), recipient=Party("j@example.com", "Müller, Jürgen"))
    encoded = [line for line in raw.split(b"\r\n") if b"=?utf-8?" in line]
    assert raw.isascii() and len(encoded) >= 4 and max(len(line) for line in encoded) <= 78
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == subject
    assert msg["From"].addresses[0].display_name == "Priya Śharma"
    assert msg["To"].addresses[0].display_name == "Müller, Jürgen"


def test_long_ascii_headers_stay_on_one_line_and_bodies_end_lines_with_crlf() -> None:
    references = [f"<r{i}@appneural.example>" for i in range(30)]
    url = "https://outreach.example/u/" + "A" * 200
    raw = _message(references=references, unsubscribe_url=url)
    lines = raw.split(b"\r\n")
    assert any(line.startswith(b"References: ") and line.endswith(references[-1].encode()) for line in lines)
    assert any(line.startswith(b"List-Unsubscribe: <" + url.encode()) for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    body = message_from_bytes(raw, policy=policy.default).get_body(("plain",))
    assert body is not None and body.get_content().splitlines() == ["Hello Jane"]


# Any text but the control characters clean_header refuses; long runs of one short alphabet reach
# words longer than a line, spaces at the ends and in runs, and a literal "=?".
_REFUSED = "".join(map(chr, [*range(32), 127]))
_HEADER_TEXT = st.one_of(
    st.text(st.one_of(st.sampled_from(' ab=?"\\<>,;:@()[].'), st.characters(codec="utf-8", exclude_characters=_REFUSED)), max_size=300),
    st.text(st.sampled_from("ab =?ü"), max_size=2500),
)


def _rfc2047(value: str) -> str:
    """A display name decoded by RFC 2047's rule (6.2: the space between two encoded words goes);
    Python's newer parser keeps it as a space."""
    return str(make_header(decode_header(value)))


@given(subject=_HEADER_TEXT, name=_HEADER_TEXT)
@example(subject="a" * 1210, name="Priya")  # a word longer than a line
@example(subject="Hello", name="ü" * 600)  # a name longer than a line once encoded
@example(subject="=?utf-8?q?Hi?=", name=" =?utf-8?q?x?=  y ")  # text that looks encoded; spaces a phrase trims or merges
@example(subject="Caf\u2028e\x85", name="a\u2029b")  # line separators to str.splitlines
def test_any_subject_and_name_fold_within_998_octets_and_read_back_the_same(subject: str, name: str) -> None:
    raw = _message(subject=subject, recipient=Party("jane@example.com", name))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == subject
    [(display_name, address)] = getaddresses([message_from_bytes(raw, policy=policy.compat32)["To"]])
    assert (_rfc2047(display_name), address) == (name, "jane@example.com")


def test_a_header_that_cannot_fold_within_998_octets_is_refused() -> None:
    with pytest.raises(InputError, match=r"Message-ID: the Message-ID header holds a word too long to fold \(1\d{3} characters on one line; at most 998\)"):
        _message(message_id="<" + "a" * 1100 + "@appneural.example>")
