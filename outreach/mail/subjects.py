"""Thread subjects: the one rule for the subject of a follow-up, and for telling a subject's own words
from the prefixes mail clients put before it. Pure: no I/O.

A prefix is one of the reply, forward or auto-reply prefixes of `languages` ("Re", "AW", "WG",
"回复", "Automatic reply", ...), optionally with a count ("Re[2]", "Re(2)", "Re^2"), followed by a
colon, half- or full-width ("Re:", "Re :", "回复："). Chains of them, repeated or mixed, are one
prefix run. Nothing else is taken off: a subject's own first word stays, whatever it looks like.
"""

from __future__ import annotations

import re

from outreach.mail.languages import LANGUAGES


def _alternation(words: set[str]) -> str:
    # longest first, so that "Fwd" is tried before "Fw" and "Out of Office AutoReply" before "Out of Office"
    return "|".join(re.escape(word).replace(r"\ ", r"\s+") for word in sorted(words, key=lambda w: (-len(w), w)))


_REPLIES = {word for language in LANGUAGES for word in language.reply}
_ALL = _REPLIES | {word for language in LANGUAGES for word in (*language.forward, *language.automatic_prefix)}
_COUNT = r"(\s*(\[\d+\]|\(\d+\)|\^\d+))?"
_COLON = r"\s*[:：]"
# a prefix starts where no letter or digit runs into it ("Tre:" holds no "Re:")
_PREFIX_RUN = re.compile(rf"^(\s*(?<!\w)({_alternation(_ALL)}){_COUNT}{_COLON})+\s*", re.IGNORECASE)
_REPLY = re.compile(rf"(?<!\w)({_alternation(_REPLIES)}){_COUNT}{_COLON}", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def strip(subject: str) -> str:
    """The subject without the reply, forward and auto-reply prefixes it starts with, and without
    surrounding white space: 'AW: WG: Angebot' -> 'Angebot'."""
    return _PREFIX_RUN.sub("", subject, count=1).strip()


def reply_subject(subject: str) -> str:
    """The subject of a message in a thread: 'Re: ' once before the thread's own subject. What the
    preview shows and what is sent."""
    return f"Re: {strip(subject)}".rstrip()


def thread_key(subject: str) -> str:
    """What two subjects of one thread have in common: the stripped subject, case and runs of white
    space set aside. For matching a reply that lost its threading headers."""
    return _SPACE.sub(" ", strip(subject)).casefold()


def own_part(subject: str) -> str:
    """The part of a subject before any reply prefix: what follows is the subject of the message answered.

    'Re: Bounce rates' is no bounce and 'Re: Out of office cover' no auto-reply, while
    'Automatic reply: Re: ...' and a forwarded 'Fwd: Returned mail' keep their own words.
    """
    return _REPLY.split(subject, maxsplit=1)[0]
