"""Auto-replies: out-of-office notices, autoresponders, ticket acknowledgements; and the return date they state.

Headers decide first (RFC 3834 and the ones Microsoft and others set, listed in `vocabulary`), then
the subject, then the wording, for the autoresponders that set no header at all. The wording is
looked for in the languages of `languages`: a statement that a machine answered is enough; a
statement of absence ("I'm on leave", "estou de férias", "出張中です") counts when the message
also says what notices say besides (whom to contact, "upon my return", a return date), since a
person answering may mention a trip too. A short message that asks nothing, that is.

The return date is the day the writer is back:

- a day stated as the day back wins ("vom 1. bis 18. Dezember … ab dem 21.12. wieder erreichbar"
  is back on 21 December);
- else the last day away, when it is said to be included ("through 18 December", "bis
  einschließlich 18.12.", "tot en met", a range "from 1 to 18 December", まで): back the next
  weekday after it;
- else the day an absence lasts "until" ("out until 18 December", "bis zum 18.12."): that day, as
  "until" mostly means in a notice (and the sequence at worst waits a day too little).

Only a day after the notice arrived counts (a notice names the day its absence began, too), within
about a year. Dates are read with dateparser, in the language of the cue that introduces them.
Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from dateparser.search import search_dates

from outreach.mail import inbound_lists as lists
from outreach.mail import inbound_mime as mime
from outreach.mail import languages as lang
from outreach.mail import subjects, vocabulary

log = logging.getLogger(__name__)

Means = Literal["back", "through", "until"]
_RANK: dict[Means, int] = {"back": 0, "through": 1, "until": 2}


@dataclass(frozen=True)
class _Cue:
    language: str
    means: Means
    pattern: re.Pattern[str]
    date_after: bool  # the date follows the cue ("back on {date}"), else it comes before ("{date}まで") or inside it


def _cue(language: lang.Language, means: Means, row: str) -> _Cue:
    before, _, after = row.partition("{date}")
    start = r"(?<!\w)" if language.spaced and before else ""
    end = r"(?!\w)" if language.spaced and after else ""
    if before and after:
        body = rf"{start}(?:{before})(?P<date>[^\n]{{1,40}}?)(?:{after}){end}"
    else:
        body = rf"{start}(?:{before or after}){end}"
    return _Cue(language.code, means, re.compile(body, re.IGNORECASE), bool(before) and not after)


_CUES: dict[str, tuple[_Cue, ...]] = {
    language.code: tuple(_cue(language, means, row) for means in ("back", "through", "until") for row in getattr(language, means))
    for language in lang.LANGUAGES
}
_SPOKEN: dict[str, re.Pattern[str]] = {  # what tells that a text is in a language: its notices' wording
    language.code: found for language in lang.LANGUAGES
    if (found := lang.pattern("automatic_subject", "automatic", "away", "notice", languages=(language,))) is not None
}
_SUBJECT = lang.pattern("automatic_subject")
_AUTOMATIC = lang.pattern("automatic")
_AWAY = lang.pattern("away")
_NOTICE = lang.pattern("notice")
_QUESTION = re.compile(r"[?？¿]")
_WORDING_LIMIT = 1000  # characters: longer answers, or ones that ask something, are a person's even if they say "away"
_HORIZON = dt.timedelta(days=400)
_TRIES = 20  # cues whose date is read, at most: each read costs milliseconds
_NEAR = 6  # characters between a cue and its date, at most ("until the 18th", "12月9日（月）に")
_AFTER_END = re.compile(r"[\n!?;。！？]")
# before a cue that follows its date, the date is the last thing since the sentence or the range began
_BEFORE_START = re.compile(r"[\n!?;。！？、]|부터|から|より|\sसे\s|[〜～~]|至|到")
_DOTTED = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(?!\d)")  # "21.12.", which dateparser reads as 21:12
_CJK_DAY = re.compile(r"(?<![\d年])(\d{1,2})月(\d{1,2})日")  # "12月21日", which dateparser's Chinese misreads


def detect(msg: Message, subject: str, text: str, received: dt.datetime | None = None, *, answer: bool = True) -> dict[str, str] | None:
    """Evidence that the message was sent automatically in answer to ours, or None. `received`
    anchors the return date a notice without headers may state ("back on Monday"). `answer`: the
    message names one it answers (In-Reply-To, References).

    'Precedence: bulk' (or junk) marks an answer as automatic, as vacation programs set it; on
    mail that answers nothing it is a bulk sender's mark (`inbound_lists.bulk`). Bulk mail is not read for
    a notice's wording either: a newsletter's "this is an automated message" is no auto-reply.
    """
    for name in (vocabulary.AUTO_SUBMITTED, *vocabulary.AUTO_REPLY):
        if msg.get(name) is not None:
            value = mime.header(msg, name)
            if vocabulary.is_automatic_value(value):
                return {"header": name, "value": value.split(";", 1)[0].strip().lower() if name == vocabulary.AUTO_SUBMITTED else value[:100]}
    precedence = mime.header(msg, vocabulary.PRECEDENCE).lower()
    if precedence in vocabulary.AUTOMATIC_PRECEDENCE and (answer or precedence not in vocabulary.LIST_PRECEDENCE):
        return {"header": vocabulary.PRECEDENCE, "value": precedence}
    found = _SUBJECT.search(subjects.own_part(subject)) if _SUBJECT else None
    if found:
        return {"subject": found.group(0).strip()}
    if len(text.strip()) > _WORDING_LIMIT or _QUESTION.search(text) or (not answer and lists.bulk(msg) is not None):
        return None
    found = _AUTOMATIC.search(text) if _AUTOMATIC else None
    if found:
        return {"phrase": found.group(0).strip()}
    found = _AWAY.search(text) if _AWAY else None
    if found and _says_more(text, received):
        return {"phrase": found.group(0).strip()}
    return None


def _says_more(text: str, received: dt.datetime | None) -> bool:
    """Besides the absence, what a notice says: whom to ask meanwhile, "upon my return", a return date."""
    if _NOTICE is not None and _NOTICE.search(text):
        return True
    if received is not None:
        return return_date(text, received, guess=False) is not None
    spoken = _spoken(text)
    return any(cue.pattern.search(text) for code in spoken for cue in _CUES[code])


def _spoken(text: str) -> list[str]:
    return [code for code, words in _SPOKEN.items() if words.search(text)]


def return_date(text: str, received: dt.datetime, *, guess: bool = True) -> dt.date | None:
    """The day an out-of-office notice says its writer is back, if it states one (see the module's rules).

    Cues are looked for in the languages the notice's wording is in, then, with `guess`, in the
    others (a notice known by its headers may be worded in none we know). Relative dates count from
    `received` ("back on Monday"), or from the last day away when the notice states it ("until
    Friday 13 December; back on Monday"); naive datetimes are taken as UTC.
    """
    base = received.astimezone(dt.UTC).replace(tzinfo=None) if received.tzinfo else received
    text = text[:3000]
    spoken = _spoken(text)
    tries = [_TRIES]
    for codes in (spoken, [code for code in _CUES if code not in spoken] if guess else []):
        end = _first(text, codes, ("through", "until"), base, tries)
        back = _first(text, codes, ("back",), dt.datetime.combine(end[0], dt.time()) if end else base, tries)
        if back is not None and back[0] <= (base + _HORIZON).date():  # counted from the last day away, it may lie too far
            return back[0]
        if end is not None:
            day, means = end
            return _next_weekday(day) if means == "through" else day
    return None


def _first(text: str, codes: list[str], meanings: tuple[Means, ...], base: dt.datetime, tries: list[int]) -> tuple[dt.date, Means] | None:
    """The first date after `base` that a cue of these meanings introduces, the stronger meaning first,
    then the earlier cue; `tries` counts down the dates read."""
    found = sorted(
        ((_RANK[cue.means], match.start(), cue, match) for code in codes for cue in _CUES[code] if cue.means in meanings
         for match in cue.pattern.finditer(text)),
        key=lambda item: item[:2],
    )
    for _, _, cue, match in found:
        if tries[0] <= 0:
            return None
        tries[0] -= 1
        day = _date_at(text, cue, match, base)
        if day is not None:
            return day, cue.means
    return None


def _date_at(text: str, cue: _Cue, match: re.Match[str], base: dt.datetime) -> dt.date | None:
    if "date" in cue.pattern.groupindex:
        return _date_in(match.group("date"), cue.language, base, last=False)
    if cue.date_after:
        snippet = _AFTER_END.split(text[match.end() : match.end() + 60], maxsplit=1)[0]
        return _date_in(snippet, cue.language, base, last=False)
    snippet = _BEFORE_START.split(text[max(0, match.start() - 40) : match.start()])[-1]
    return _date_in(snippet, cue.language, base, last=True)


def _date_in(snippet: str, language: str, base: dt.datetime, *, last: bool) -> dt.date | None:
    """The date next to a cue (right after it, or right before it: "back to you on Friday" names no
    return day) that lies after the day the notice came, within a year or so. A time alone ('17.06'
    read as 17:06) lands on that same day and so does not count."""
    if not re.search(r"\d|[^\W\d_]{2,}", snippet):
        return None
    snippet = _with_year(snippet, base).rstrip()
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "RETURN_AS_TIMEZONE_AWARE": False}
    try:
        found = search_dates(snippet, languages=[language], settings=settings)
    except Exception:  # dateparser fails on some odd inputs; a notice without a date is still a notice
        log.debug("dateparser could not read %r", snippet, exc_info=True)
        return None
    for words, when in reversed(found or []) if last else found or []:
        at = snippet.find(words)
        near = len(snippet) - at - len(words) <= _NEAR if last else at <= _NEAR
        if near and base.date() < when.date() <= (base + _HORIZON).date():
            return when.date()
    return None


def _with_year(snippet: str, base: dt.datetime) -> str:
    """Day-and-month dates without a year, with the year that puts them next after `base`: dateparser
    reads '21.12.' as a time of day, and '12月21日' in Chinese as another date altogether."""

    def year(month: int, day: int) -> int | None:
        try:
            when = dt.date(base.year, month, day)
        except ValueError:
            return None
        return base.year if when > base.date() else base.year + 1

    def dotted(found: re.Match[str]) -> str:
        day, month = int(found.group(1)), int(found.group(2))
        return found.group(0) if (y := year(month, day)) is None else f"{day}.{month}.{y}"

    def cjk(found: re.Match[str]) -> str:
        month, day = int(found.group(1)), int(found.group(2))
        return found.group(0) if (y := year(month, day)) is None else f"{y}年{month}月{day}日"

    return _CJK_DAY.sub(cjk, _DOTTED.sub(dotted, snippet))


def _next_weekday(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day
