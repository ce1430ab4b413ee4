"""What a person wrote: the new text of a reply, an opt-out request in it, a meeting answer. Pure: no I/O.

The reply-parsing libraries on PyPI (mail-parser-reply, email-reply-parser, talon, quotequail,
email-reply-extractor) get between 8 and 33 of the 64 reference replies we test against right
(wrapped and translated "On ... wrote:" lines, Outlook header blocks, interleaved answers trip them),
and the best of them, talon, has had no release since 2017. So the trimming is done here, line by
line: find where the quoted history starts (an attribution line, a header block, a separator), keep
what comes before it, then drop the signature.
"""

from __future__ import annotations

import functools
import logging
import re
from email.message import Message

from icalendar import Calendar

from outreach.mail import inbound_mime as mime
from outreach.mail import languages as lang

log = logging.getLogger(__name__)

_WROTE = re.compile(
    r"\b(wrote|writes|schrieb|a écrit|escribió|escreveu|ha scritto|skrev|schreef|geschreven|napisał(?:\(a\))?|"
    r"написал[аи]?|пише|kirjoitti|írta|yazdı|έγραψε)\b.{0,100}[:：]\s*-*$|(写道|寫道)[:：]\s*$",
    re.IGNORECASE,
)
# How attribution lines begin: "On", "Le", "Am", ... a date or a weekday.
_STARTER = re.compile(
    r"^(on|le|am|el|em|il|op|den|dnia|w dniu|в|at|\d|在|-{2,})"
    r"|^(mon|tue|wed|thu|fri|sat|sun|lun|mar|mer|jeu|ven|sam|dim|mo|di|mi|do|fr|sa|so)\w*[.,]",
    re.IGNORECASE,
)
_DATED = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}\b")
# A sentence ending inside a line: such a line is prose, not (part of) an attribution.
_SENTENCE_BREAK = re.compile(r"[^\W\d_]{3,}\s?[.!?]+\s+[A-ZÀ-ÖØ-ÞА-ЯЁ]")
_HEADER_FIRST = re.compile(
    r"^[\s>*]*(from|von|de|da|från|fra|van|od|от|lähettäjä|feladó|kimden|发件人|寄件者|差出人)\s*\*?\s*[:：]",
    re.IGNORECASE,
)
_HEADER_NEXT = re.compile(
    r"^[\s>*]*(sent|date|to|subject|cc|reply-to|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha|para|asunto|"
    r"data|inviato|a|oggetto|risposta|skickat|till|ämne|verzonden|aan|onderwerp|wysłano|do|temat|отправлено|кому|"
    r"тема|дата|sendt|emne|til)\s*\*?\s*[:：]",
    re.IGNORECASE,
)
# "-----Original Message-----", "---------- Forwarded message ---------" and their translations.
_SEPARATOR = re.compile(r"^[\s>*]*-{2,}\s*[^-\s][^-]*?-{2,}[\s*]*$")
# A line of rule characters only.
_DIVIDER = re.compile(r"^[\s>]*[-_=*~#+ᐧ\u200b\s]*$")
_FORWARD = re.compile(
    r"^[\s>]*(begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié|"
    r"inicio del mensaje reenviado)\s*:",
    re.IGNORECASE,
)
# "Sent from my iPhone" and its kin; "sent with/via/by ..." counts only as a short line, being also prose.
_TAGLINE = re.compile(
    r"^[\s(<]*((?P<weak>sent (with|via|by|using)\b)|sent from\b|envoyé (depuis|de)\b|von meinem\b.*gesendet|gesendet von\b|"
    r"diese nachricht wurde von meinem|verzonden (met|vanaf|vanuit|van)\b|enviado (desde|do|de)\b|inviato da\b|"
    r"skickat från\b|sendt fra\b|wysłane z\b|отправлено (с|из)\b|從我的.*傳送|从我的.*发送|get outlook for\b|"
    r"download outlook for\b)",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"\s*[A-Za-z]{0,12}>")  # "> " quoting, and supercite's "Name> "
_MAX_LINES = 5000


def new_text(text: str) -> str:
    """The reply without the quoted history before or after it and without the signature."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:_MAX_LINES]]
    kept: list[str] = []
    while (found := _history(lines)) is not None:
        what, start, after = found
        body = _skip_quoted(lines, after)
        if not _has_text(kept + lines[:start]):
            lines = lines[body:]  # the history came first (a bottom-posted reply): the answer is below it
        elif what == "attribution" and any(_angle_quoted(l) for l in lines[after:body]) and _substantive(lines[body:]):
            kept += lines[:start] + lines[after:body]  # answers between the quoted lines: keep them all
            lines = lines[body:]
        else:
            lines = lines[:start]
            break
    lines = _trailing_quote(_signature(kept + lines))
    return "\n".join(_strip(lines))


def unquoted(text: str) -> str:
    """The lines of a text that are not quoted."""
    return "\n".join(line for line in text.splitlines() if not _quoted(line))


def _history(lines: list[str]) -> tuple[str, int, int] | None:
    """(what, first line of the quoted history, first line after its attribution or header block), or None."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        start = _attribution_start(lines, i)
        if start is not None:
            return "attribution", start, i + 1
        end = _dated_attribution(lines, i)
        if end is not None:
            return "attribution", i, end + 1
        if _header_block(lines, i):
            return "header", _separator_above(lines, i), _block_end(lines, i)
        if (_SEPARATOR.match(line) and "pgp" not in line.lower()) or _FORWARD.match(line):
            after = i + 1
            if after < len(lines) and (_HEADER_FIRST.search(lines[after]) or _HEADER_NEXT.search(lines[after])):
                after = _block_end(lines, after)
            return "separator", i, after
    return None


def _attribution_start(lines: list[str], end: int) -> int | None:
    """The first line of an attribution ("On <date>, <name> wrote:", wrapped or translated) ending on `end`."""
    if not re.search(r"[:：]\s*-*$", lines[end]):
        return None
    candidates = []
    for k in range(end, max(-1, end - 6), -1):
        window = [_bare(line) for line in lines[k : end + 1] if line.strip()]
        if len(window) > 4:
            break
        if not lines[k].strip():
            continue
        joined = " ".join(window)
        if len(joined) > 300 or _SENTENCE_BREAK.search(joined):
            break
        if _WROTE.search(joined) and re.search(r"\d|@", joined):
            candidates.append(k)
    if not candidates:
        return None
    started = [k for k in candidates if _STARTER.match(_bare(lines[k]))]
    if started:
        return started[-1]
    contiguous = [k for k in candidates if all(line.strip() for line in lines[k : end + 1])]
    return contiguous[-1] if contiguous else None


def _dated_attribution(lines: list[str], i: int) -> int | None:
    """Gmail's older '2016-03-03 17:21 GMT+01:00 Name <address>:' attribution, with or without the colon.

    A line that merely starts with a date ('2024-06-12 15:00 works for me') has no zone or address.
    """
    bare = _bare(lines[i])
    if not _DATED.match(bare) or not re.search(r"GMT[+-]\d|[<@]", bare) or _SENTENCE_BREAK.search(bare):
        return None
    end = i
    while end + 1 < len(lines) and lines[end + 1].strip() and not _quoted(lines[end + 1]) and end - i < 2:
        if re.search(r"[:：]\s*$", lines[end]):
            break
        end += 1
    return end


def _header_block(lines: list[str], i: int) -> bool:
    """A 'From: ... Sent: ... To: ...' block, as Outlook and others put above the message they quote."""
    return bool(_HEADER_FIRST.search(lines[i])) and any(_HEADER_NEXT.search(line) for line in lines[i + 1 : i + 6])


def _separator_above(lines: list[str], i: int) -> int:
    """Move a header block's start up over the divider line ('____', '-----Original Message-----') above it."""
    start = i
    while start > 0 and (not lines[start - 1].strip() or _DIVIDER.match(lines[start - 1]) or _SEPARATOR.match(lines[start - 1])):
        start -= 1
        if lines[start].strip():
            break
    return start


def _block_end(lines: list[str], i: int) -> int:
    while i < len(lines) and lines[i].strip():
        i += 1
    return i


def _skip_quoted(lines: list[str], i: int) -> int:
    while i < len(lines) and (not lines[i].strip() or _quoted(lines[i])):
        i += 1
    return i


def _trailing_quote(lines: list[str]) -> list[str]:
    """Drop the quoted block a reply ends with, when the person wrote something before it."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or _quoted(lines[end - 1])):
        end -= 1
    return lines[:end] if _has_text(lines[:end]) else lines


def _signature(lines: list[str], *, from_first: bool = False) -> list[str]:
    """Cut at a '-- ' delimiter, a 'Sent from my phone' line, or a short block under a line of underscores."""
    for i, line in enumerate(lines):
        if i == 0 and not from_first:
            continue
        bare = line.strip()
        if bare == "--" or _is_tagline(bare):
            return lines[:i]
        if len(bare) >= 3 and set(bare) == {"_"} and sum(1 for rest in lines[i + 1 :] if rest.strip()) <= 6:
            return lines[:i]
    return lines


def _is_tagline(bare: str) -> bool:
    found = _TAGLINE.match(bare)
    return found is not None and len(bare) <= 80 and (found.group("weak") is None or len(bare.split()) <= 5)


def _substantive(lines: list[str]) -> bool:
    """Unquoted text that is more than a signature."""
    return _has_text(_signature([line for line in lines if line.strip() and not _quoted(line)], from_first=True))


def _strip(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and _DIVIDER.match(lines[end - 1]):
        end -= 1
    start = 0
    while start < end and not lines[start].strip():
        start += 1
    return lines[start:end]


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _bare(line: str) -> str:
    return line.strip().lstrip(">").strip()


def _quoted(line: str) -> bool:
    return _QUOTED.match(line) is not None


def _angle_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


# -- opt-out requests ---------------------------------------------------------------------------

_STEMS = {language.code: language.opt_out_stems for language in lang.LANGUAGES if language.opt_out}
# a negation shortly before a request, in its language and its clause, undoes it
_NEGATED = {
    language.code: re.compile(rf"({'|'.join(lang.words(row, language.spaced) for row in language.negation)})[^.,;!?\n]{{0,25}}$",
                              re.IGNORECASE)
    for language in lang.LANGUAGES if language.negation
}
_FOOTER = lang.pattern("footer")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|[。！？；]\s*|\n+")
# "but" starts a clause of its own; French "mais" is left out, being Portuguese for "more"
_CLAUSES = re.compile(r"[,，、]|\s+(?:but|however|aber|pero|ma|maar|mas|ale|men)\s+", re.IGNORECASE)


def opt_out_phrase(text: str) -> str | None:
    """The phrase with which a person asks us to stop, in what they wrote themselves; None if they do not.

    A request counts unless it is negated ("don't unsubscribe me", "no need to remove me") or sits
    in a sentence worded as a mailing's footer ("if you no longer wish to receive ..., unsubscribe").
    Being "not interested" alone is an answer, not an opt-out: the sequence stops on any reply anyway.
    """
    text = unquoted(text)
    folded = text.lower()
    requests = _requests(tuple(code for code, stems in _STEMS.items() if any(stem in folded for stem in stems)))
    if requests is None:
        return None
    for sentence in _SENTENCES.split(text):
        for clause in _CLAUSES.split(sentence):
            for found in requests.finditer(clause):
                negation = _NEGATED.get(found.lastgroup or "")
                if negation is not None and negation.search(clause[: found.start()]):
                    continue
                if _FOOTER is not None and _FOOTER.search(sentence):
                    break
                return " ".join(found.group(0).split())
            else:
                continue
            break  # a footer's sentence: none of its clauses counts
    return None


@functools.lru_cache(maxsize=64)
def _requests(codes: tuple[str, ...]) -> re.Pattern[str] | None:
    """The opt-out rows of these languages: only those whose stems a text holds are worth its time."""
    return lang.pattern("opt_out", languages=tuple(language for language in lang.LANGUAGES if language.code in codes), named=True)


# -- meeting answers ----------------------------------------------------------------------------

_PARTSTAT = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}


def meeting_answer(msg: Message) -> str | None:
    """'accepted', 'declined' or 'tentative' from an iCalendar METHOD:REPLY part, else None."""
    for part in mime.parts(msg):
        if not _is_calendar(part):
            continue
        try:
            calendar = Calendar.from_ical(mime.decode(part))
        except Exception:  # icalendar raises various errors on malformed data; such a part says nothing
            log.debug("unreadable calendar part", exc_info=True)
            continue
        if str(calendar.get("METHOD", "")).upper() != "REPLY":
            continue
        for event in calendar.walk("VEVENT"):
            attendees = event.get("ATTENDEE")
            for attendee in attendees if isinstance(attendees, list) else [attendees]:
                status = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
                if status in _PARTSTAT:
                    return _PARTSTAT[status]
    return None


def _is_calendar(part: Message) -> bool:
    filename = part.get_filename()
    return part.get_content_type() in ("text/calendar", "application/ics") or (
        isinstance(filename, str) and filename.lower().endswith(".ics")
    )
