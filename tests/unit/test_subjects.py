"""Thread subjects: the prefixes mail clients put before a subject, in the languages of `languages`,
come off; nothing else does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.mail import subjects
from outreach.mail.languages import LANGUAGES

PREFIXES = sorted({word for language in LANGUAGES for word in (*language.reply, *language.forward, *language.automatic_prefix)})
_PREFIX = re.compile("|".join(re.escape(word) for word in PREFIXES), re.IGNORECASE)  # "a table word, whatever its case"


@st.composite
def prefix(draw: st.DrawFn) -> str:
    """One prefix as clients write it: any case, a count or none, a half- or full-width colon, spaces or none."""
    word = draw(st.sampled_from(PREFIXES))
    word = "".join(ch.upper() if draw(st.booleans()) else ch.lower() for ch in word)
    count = draw(st.sampled_from(["", "[2]", "[12]", "(3)", "^2", " [2]"]))
    return f"{word}{count}{draw(st.sampled_from(['', ' ']))}{draw(st.sampled_from([':', '：']))}{draw(st.sampled_from(['', ' ', '  ']))}"


chains = st.lists(prefix(), min_size=1, max_size=5).map("".join)
# words that are no prefix: letters only, and none of the table's words in any case
words = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Lo"]), min_size=1, max_size=12).filter(lambda w: not _PREFIX.fullmatch(w))


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_stripping_is_idempotent(subject: str) -> None:
    once = subjects.strip(subject)
    assert subjects.strip(once) == once


@settings(max_examples=300)
@given(chains, st.text(max_size=40))
def test_any_chain_of_prefixes_comes_off(chain: str, rest: str) -> None:
    base = subjects.strip(rest)
    assert subjects.strip(chain + base) == base


@settings(max_examples=300)
@given(words, st.text(max_size=40))
def test_a_word_that_is_no_prefix_stays(word: str, rest: str) -> None:
    subject = f"{word}: {rest}"
    assert subjects.strip(subject) == subject.strip()


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_a_stripped_subject_re_prefixed_strips_back_to_itself(subject: str) -> None:
    stripped = subjects.strip(subject)
    reply = subjects.reply_subject(stripped)
    assert subjects.strip(reply) == stripped
    assert subjects.reply_subject(reply) == reply
    assert subjects.thread_key(reply) == subjects.thread_key(subject)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Hello", "Re: Hello"), ("Re: Hello", "Re: Hello"), ("RE: re: Fwd: Hello", "Re: Hello"), ("AW: Hallo", "Re: Hallo"),
     ("AW: Angebot", "Re: Angebot"), ("回复：方案", "Re: 方案"), ("Re[3]: WG: Re : Angebot", "Re: Angebot"), ("", "Re:")],
)
def test_reply_subjects(subject: str, expected: str) -> None:
    assert subjects.reply_subject(subject) == expected
    assert subjects.thread_key(expected) == subjects.thread_key(subject)


def test_thread_keys_set_case_and_spacing_aside() -> None:
    assert subjects.thread_key("RE:  Our   Proposal ") == subjects.thread_key("Our proposal") == "our proposal"
    assert subjects.thread_key("Our proposal") != subjects.thread_key("Our proposal, revised")


@pytest.mark.parametrize(
    ("subject", "own"),
    [("Automatic reply: Re: Our proposal", "Automatic reply: "), ("Re: Out of office cover", ""),
     ("自動返信: Re: ご提案", "自動返信: "), ("Abwesenheitsnotiz: AW: Angebot", "Abwesenheitsnotiz: "),
     ("Fwd: Returned mail", "Fwd: Returned mail"), ("Odpowiedź automatyczna: Odp: Oferta", "Odpowiedź automatyczna: ")],
)
def test_the_own_part_of_a_subject_ends_at_a_reply_prefix(subject: str, own: str) -> None:
    assert subjects.own_part(subject) == own
