"""Auto-replies: out-of-office notices, autoresponders, ticket acknowledgements; and the return date they state.

Headers decide first (RFC 3834 and the ones Microsoft and others set, listed in `vocabulary`), then the subject, then the
wording, for the autoresponders that set no header at all. Outlook puts X-Auto-Response-Suppress
on ordinary mail too, so that header is no evidence. The return date is read with dateparser, in
the language of the phrase that introduces it. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from email.message import Message

from dateparser.search import search_dates

from outreach.mail import inbound_mime as mime
from outreach.mail import vocabulary

log = logging.getLogger(__name__)

_SUBJECT = re.compile(
    r"^\s*(auto(matic|matische|matique|matisk)?[\s_-]*"
    r"(reply|response|respons|antwort|réponse|respuesta|risposta|svar|antwoord)|autoreply|auto\s*:|out of (the )?office|ooo\b|abwesenheit|abwesend|absence|absent|fuera de la oficina|"
    r"hors du bureau|afwezig|niet aanwezig|away\b|on (vacation|holiday|leave)\b|vacation\b|urlaub\b|"
    r"(réponse|respuesta|risposta) automatica|(ticket|case|request)\s+(received|created|opened|#?\d))"
    r"|\b(automatic reply|auto-?reply|out of (the )?office|abwesenheitsnotiz|automatische antwort|réponse automatique|"
    r"respuesta automática|risposta automatica|automatisch antwoord)\b",
    re.IGNORECASE,
)
_WORDING = re.compile(
    r"\bthis is an? auto(mated|matic|matically generated)\s+(reply|response|message|e-?mail|acknowledge?ment)"
    r"|\bauto(matic|mated)?[\s-]?(reply|response)\b"
    r"|(?<!\bwas )(?<!\bwere )(?<!\bbeen )\bout of (the )?office\b"
    r"|\b(i am|i'm|i will be|i'll be)\s+(currently\s+|now\s+)?(away|out|off|travell?ing"
    r"|on (annual |parental |maternity |paternity |sick |medical )?(leave|vacation|holiday))\b"
    r"|\blimited access to (my )?e-?mail|\b(we|i) (have|'ve) received your (message|e-?mail|request|enquiry|inquiry)"
    r"|\byour (request|ticket|case|message) (has been|was) (received|created|logged|opened)"
    r"|##-\s*please type your reply above this line"
    r"|\b(ich bin|bin ich)\b.{0,40}\b(nicht im büro|abwesend|im urlaub|außer haus)|\babwesenheitsnotiz"
    r"|\bje suis (actuellement )?(absente?|en congés?|en vacances)|\bréponse automatique"
    r"|\b(estoy|estaré) (fuera de la oficina|de vacaciones|ausente)|\brespuesta automática"
    r"|\bik ben (momenteel |afwezig|niet aanwezig|op vakantie|met verlof)|\bautomatisch antwoord"
    r"|\bsono (attualmente )?(assente|fuori ufficio|in ferie)|\brisposta automatica",
    re.IGNORECASE,
)
# Phrases that introduce the return date, by language.
_RETURN_CUES: dict[str, re.Pattern[str]] = {
    language: re.compile(pattern, re.IGNORECASE)
    for language, pattern in {
        "en": r"\b(back|return(ing)?|available( again)?|in the office)\b( to (the|my) (office|desk))?"
        r"( (on|from|in|by|at work on))?|\b(until|till|til|through|thru)\b",
        "de": r"\b(zurück|wieder( im büro| erreichbar)?)\b( (am|ab|ab dem))?|\bbis\b( (zum|einschließlich))?"
        r"|\bab( dem)?\b",
        "fr": r"\b(de retour|retour|rentrerai)\b( (le|à partir du))?|\bjusqu'(au|à)\b|\bà partir du\b",
        "es": r"\b(regreso|vuelvo|volveré|estaré de vuelta)\b( el)?|\bhasta\b( el)?",
        "nl": r"\b(terug|weer aanwezig)\b( (op|vanaf))?|\btot( en met)?\b",
        "it": r"\b(rientro|rientrerò|di ritorno)\b( il)?|\bfino al\b",
        "pt": r"\b(regresso|retorno|volto)\b( (em|no dia|a))?|\baté\b( (o dia|dia))?",
    }.items()
}
_WORDING_LIMIT = 1000  # characters: longer answers, or ones that ask something, are a person's even if they say "away"
_HORIZON = dt.timedelta(days=400)


def detect(msg: Message, subject: str, text: str) -> dict[str, str] | None:
    """Evidence that the message was sent automatically in answer to ours, or None."""
    for name in (vocabulary.AUTO_SUBMITTED, *vocabulary.AUTO_REPLY):
        if msg.get(name) is not None:
            value = mime.header(msg, name)
            if vocabulary.is_automatic_value(value):
                return {"header": name, "value": value.split(";", 1)[0].strip().lower() if name == vocabulary.AUTO_SUBMITTED else value[:100]}
    precedence = mime.header(msg, vocabulary.PRECEDENCE).lower()
    if precedence in vocabulary.AUTOMATIC_PRECEDENCE:
        return {"header": vocabulary.PRECEDENCE, "value": precedence}
    found = _SUBJECT.search(mime.own_subject(subject))
    if found:
        return {"subject": found.group(0).strip()}
    found = _WORDING.search(text) if len(text.strip()) <= _WORDING_LIMIT and "?" not in text else None
    if found:
        return {"phrase": found.group(0).strip()}
    return None


def return_date(text: str, received: dt.datetime) -> dt.date | None:
    """The date an out-of-office notice says its writer is back (or away until), if it states one.

    Relative dates ("back on Monday") count from `received`; naive datetimes are taken as UTC.
    """
    base = received.astimezone(dt.UTC).replace(tzinfo=None) if received.tzinfo else received
    for language, cue in _RETURN_CUES.items():
        for found in cue.finditer(text[:3000]):
            when = _date_after(text[found.end() : found.end() + 60], language, base)
            if when is not None:
                return when
    return None


def _date_after(snippet: str, language: str, base: dt.datetime) -> dt.date | None:
    """The first date in the words after a cue that lies after the day the notice came, within a year or so.

    A time alone ('17.06' read as 17:06) lands on that same day and so does not count.
    """
    snippet = re.split(r"[\n!?;]", snippet, maxsplit=1)[0]
    if not re.search(r"\d|[^\W\d_]{3,}", snippet):
        return None
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "RETURN_AS_TIMEZONE_AWARE": False}
    try:
        found = search_dates(snippet, languages=[language], settings=settings)
    except Exception:  # dateparser fails on some odd inputs; a notice without a date is still a notice
        log.debug("dateparser could not read %r", snippet, exc_info=True)
        return None
    for _text, when in found or ():
        day: dt.date = when.date()
        if base.date() < day <= (base + _HORIZON).date():
            return day
    return None
