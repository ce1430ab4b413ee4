"""Delivery reports and complaints: bounces (hard or soft), delay and success notices, feedback reports.

RFC 3464 delivery-status parts are read here field by field, because they carry what decides hard
against soft: the per-recipient Action and Status. flufl.bounce (GNU Mailman's detectors for the
many non-standard bounce formats real servers send) finds the failed recipients of the rest; what
it does not give (the status class, SMTP reply codes in the text, Amazon SES notifications,
Microsoft's complaint format) is added here. Pure: no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from outreach.mail import bounce_reasons as reasons
from outreach.mail import inbound_mime as mime
from outreach.mail import vocabulary

log = logging.getLogger(__name__)

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<![\w.\-/])([45])[0-5]\d(?=[\s\-,;]|$)(?![\-:.]\d)", re.MULTILINE)
_FAILED_ACTIONS = ("failed", "failure", "error", "undeliverable", "expired")
_DAEMON = re.compile(r"^(mailer[-_]?daemon|mail-daemon|post_?master|mdaemon)@", re.IGNORECASE)
_DAEMON_NAME = re.compile(r"mail deliver(y)? (sub)?system|postmaster|mailer-daemon|mail administrator", re.IGNORECASE)
_TEXT_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem)|failure notice|"
    r"returned mail|mail delivery (failed|failure|error|system)|could not be delivered|delivery error|"
    r"mail (system )?(error|failure)|non[- ]?delivery|nondeliverable|rejected|bounce|permanent error|"
    r"delivery notification|unzustellbar|non remis|no entregado|niet bezorgd|non recapitabile",
    re.IGNORECASE,
)
_WARNING_SUBJECT = re.compile(
    r"^\s*warning\b|notification: warning|\(delay\)|\bdelayed\b|still (being retried|undelivered)|will retry",
    re.IGNORECASE,
)
_BOUNCE_TEXT = re.compile(
    r"could not be delivered|undeliverable|delivery (has )?failed|permanent (error|failure)|returned to sender|"
    r"was not delivered|failed to deliver|delivery to the following recipients? failed",
    re.IGNORECASE,
)
_RETURNED_COPY = re.compile(
    r"^(Received|Return-Path|DKIM-Signature|Message-I[Dd]|MIME-Version|X-Received)\s*:"
    r"|^\s*[-=*]{2,}(?!.*transcript).*(original|copy|returned|follows|headers).*$|^\s*original message headers",
    re.IGNORECASE | re.MULTILINE,
)
_TRANSIENT_WORDS = re.compile(
    r"(temporar\w*|try again later|retry time\w*|expired|timed? ?out|time-?out|too many (connections|recipients)|"
    r"deferred|greylist\w*|could not send (mail )?for past|still undelivered|connection refused)(?![@\w])",
    re.IGNORECASE,
)
_Q = r'\\?"'  # SNS wraps the SES notification as a JSON string, so its quotes may come escaped
_SES = re.compile(rf"{_Q}notificationType{_Q}\s*:\s*{_Q}(Bounce|Complaint|Delivery){_Q}")
_ORIGINAL_ID = re.compile(r"^\s*Message-I[Dd]\s*:\s*(<[^<>\s]+>)", re.MULTILINE)
_ANY_ID = re.compile(r"^\s*(?:Message-I[Dd]|In-Reply-To|References)\s*:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
_DEAD_ADDRESS = frozenset({reasons.Reason.USER_UNKNOWN, reasons.Reason.HOST_UNKNOWN, reasons.Reason.HAS_MOVED, reasons.Reason.NOT_ACCEPT})
_DESCRIPTIONS = {
    "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address",
    "1.3": "bad destination mailbox address syntax",
    "1.6": "destination mailbox has moved",
    "1.10": "recipient address has null MX",
    "2.1": "mailbox disabled",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "3.4": "message too big for system",
    "4.1": "no answer from host",
    "4.4": "unable to route",
    "4.7": "delivery time expired",
    "5.3": "too many recipients",
    "7.1": "delivery not authorized, message refused",
    "7.26": "message failed sender authentication (DMARC)",
}


@dataclass(frozen=True)
class Recipient:
    """One recipient's line in a delivery report."""

    address: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Report:
    """What a delivery report or complaint says: the caller turns it into a Classification."""

    kind: Literal["bounce", "complaint", "delivery_notice"]
    hard: bool | None = None
    recipients: tuple[str, ...] = ()
    status: str | None = None
    reason: str = ""
    cause: reasons.Reason | None = None  # bounces: why delivery failed
    evidence: dict[str, str] = field(default_factory=dict)


def detect(msg: Message, text: str) -> Report | None:
    """The report this message is, or None for any other mail. `text` is its human-readable body."""
    text = _lines(text or _loose_text(msg))
    found = (
        _feedback_report(msg)
        or _ses_notification(text)
        or _delivery_status(msg, text)
        or _nonstandard(msg, text)
    )
    if found is None or not found.recipients:
        return found
    return replace(found, recipients=_not_ours(msg, text, found.recipients) or found.recipients)


def original_message_id(msg: Message, text: str) -> str | None:
    """The Message-ID of the message a report is about: from the returned copy or its quoted headers."""
    for attached in mime.attached_messages(msg):
        ids = mime.message_ids(mime.header(attached, "Message-ID"))
        if ids:
            return ids[0]
    found = _ORIGINAL_ID.search(text)
    return found.group(1) if found else None


# -- complaints ---------------------------------------------------------------------------------


def _feedback_report(msg: Message) -> Report | None:
    """RFC 5965 abuse reports, and Microsoft's older JMRP form (the complained-of message attached)."""
    for part in mime.parts(msg):
        if part.get_content_type() == "message/feedback-report":
            fields = _blocks(part)
            first = fields[0] if fields else Message()
            recipients = mime.addresses(first, "Original-Rcpt-To", "Removal-Recipient") or _original_to(msg)
            feedback = mime.header(first, "Feedback-Type") or "abuse"
            return Report(
                "complaint",
                recipients=recipients,
                reason=f"feedback report: {feedback}",
                evidence={"detector": "rfc5965", "feedback_type": feedback},
            )
    for attached in (msg, *mime.attached_messages(msg)):  # the complained-of message may be the whole of it
        reporter = mime.header(attached, vocabulary.JMRP_RECIPIENT)
        if reporter:
            return Report(
                "complaint",
                recipients=mime.addresses(attached, vocabulary.JMRP_RECIPIENT) or (reporter.lower(),),
                reason="complaint (Microsoft JMRP)",
                evidence={"detector": "jmrp", "header": vocabulary.JMRP_RECIPIENT},
            )
    return None


def _ses_notification(text: str) -> Report | None:
    """Amazon SES notifications sent on by email: JSON, often wrapped, so read field by field."""
    found = _SES.search(text)
    if found is None:
        return None
    kind = found.group(1)
    evidence = {"detector": "amazon-ses", "notificationType": kind}
    if kind == "Complaint":
        return Report("complaint", recipients=_json_addresses(text, "emailAddress"), reason="complaint (Amazon SES)",
                      evidence=evidence)
    if kind == "Delivery":
        return Report("delivery_notice", recipients=_json_addresses(text, "recipients"),
                      reason="delivered (Amazon SES)", evidence=evidence)
    bounce_type = re.search(rf"{_Q}bounceType{_Q}\s*:\s*{_Q}(\w+)", text)
    status = _code(text)
    hard = bounce_type.group(1) == "Permanent" if bounce_type else (status is None or status.startswith("5"))
    evidence["bounceType"] = bounce_type.group(1) if bounce_type else ""
    diagnostic = re.search(rf"{_Q}diagnosticCode{_Q}\s*:\s*{_Q}((?:[^\"\\]|\\.)*)", text)
    cause = reasons.reason_of(status, diagnostic.group(1) if diagnostic else "", "")
    return Report("bounce", hard=hard, recipients=_json_addresses(text, "emailAddress"), status=status,
                  reason=_describe(status, hard), cause=cause, evidence=evidence)


def _json_addresses(text: str, key: str) -> tuple[str, ...]:
    """The addresses in a JSON field's value (a string or a list of strings), wherever the field occurs."""
    values = re.findall(rf"{_Q}{key}{_Q}\s*:\s*(\[[^\]]*\]|{_Q}[^\"\\]*)", text)
    return _unique(a.lower() for value in values for a in _TEXT_ADDRESS.findall(value))


# -- RFC 3464 -----------------------------------------------------------------------------------


def _delivery_status(msg: Message, text: str) -> Report | None:
    """A report with message/delivery-status parts: failed recipients make a bounce, else a notice."""
    recipients = list(_dsn_recipients(msg))
    if not recipients:
        return None
    failed = [r for r in recipients if _failed(r)]
    if not failed:
        actions = sorted({r.action or "unknown" for r in recipients})
        return Report(
            "delivery_notice",
            recipients=_unique(r.address for r in recipients),
            status=next((code for r in recipients if (code := _code(r.status))), None),
            reason="delivery delayed, still being retried" if "delayed" in actions else "delivered",
            evidence={"detector": "rfc3464", "action": ",".join(actions)},
        )
    words = _own_words(text)
    status, source = _failure_status(failed, words)
    hard = _hard(status, " ".join(r.diagnostic for r in failed) + "\n" + words)
    diagnostic = next((r.diagnostic for r in failed if r.diagnostic), "")
    addresses = _unique(r.address for r in failed) or _original_to(msg)
    cause = reasons.reason_of(status, _reply_of(diagnostic) or _quoted_replies(words), words, _domains(addresses),
                              gateway=reasons.from_gateway(msg.get_all))
    evidence = {"detector": "rfc3464", "action": "failed", "status_from": source}
    if diagnostic:
        evidence["diagnostic"] = diagnostic[:300]
    return Report(
        "bounce",
        hard=hard,
        recipients=addresses,
        status=status,
        reason=_describe(status, hard, diagnostic),
        cause=cause,
        evidence=evidence,
    )


def _dsn_recipients(msg: Message) -> Iterator[Recipient]:
    for part in mime.parts(msg):
        if part.get_content_type() not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        for block in _blocks(part):
            address = _recipient_address(block)
            action = mime.header(block, "Action").lower().split(" ", 1)[0].strip(";,")
            status = mime.header(block, "Status")
            if address or action or status:
                yield Recipient(address, action, status, mime.header(block, "Diagnostic-Code"))


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part, however the parser left them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    chunks = re.split(r"\n\s*\n", mime.decode(part).replace("\r\n", "\n"))
    return [HeaderParser(policy=mime.POLICY).parsestr(c.strip() + "\n") for c in chunks if c.strip()]


def _recipient_address(block: Message) -> str:
    for name in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
        value = mime.header(block, name)
        if not value:
            continue
        address = value.split(";", 1)[-1].strip().strip("<>").strip().lower()
        if mime.ADDRESS.fullmatch(address):
            return address
    return ""


def _failed(recipient: Recipient) -> bool:
    if recipient.action:
        return recipient.action.startswith(_FAILED_ACTIONS)
    status = _STATUS.search(recipient.status)
    return status is not None and status.group(1) in "45"


def _failure_status(failed: list[Recipient], text: str) -> tuple[str | None, str]:
    """The enhanced status code that says why delivery failed, and where it was found."""
    for source in ("Status", "Diagnostic-Code"):
        for recipient in failed:
            code = _code(recipient.status if source == "Status" else recipient.diagnostic)
            if code and not code.startswith("2"):
                return code, source
    return _text_status(" ".join(r.diagnostic for r in failed)) or _text_status(text), "text"


# -- everything else ----------------------------------------------------------------------------


def _nonstandard(msg: Message, text: str) -> Report | None:
    """Bounces without a delivery-status part.

    flufl.bounce's detectors find the recipients; since its loosest heuristics also fire on
    ordinary mail (and read every line of every part), they run only on a message that looks like a
    report: from a mailer daemon, with a null sender, a bounce subject, a multipart/report type or
    the returned message attached.
    """
    failed_header = mime.addresses(msg, "X-Failed-Recipients")
    subject = mime.header(msg, "Subject")
    daemon = _from_daemon(msg)
    null_sender = _null_sender(msg)
    returned = any(True for _ in mime.attached_messages(msg))
    bounce_subject = bool(_BOUNCE_SUBJECT.search(mime.own_subject(subject)))
    report_like = daemon or null_sender or bounce_subject or returned or msg.get_content_type() == "multipart/report"
    temporary, permanent = _flufl(msg) if report_like or failed_header else ((), ())
    if failed_header:
        detector = "X-Failed-Recipients"
    elif daemon:
        detector = "mailer-daemon sender"
    elif permanent or temporary:
        detector = "flufl.bounce"
    elif bounce_subject and (null_sender or returned or _codes_in(text)):
        detector = "subject"
    elif returned and (null_sender or _BOUNCE_TEXT.search(text[:5000])):
        detector = "message returned"
    elif null_sender and _says_dead(_own_words(text)):
        detector = "null sender"  # a notice that the address is dead, however plain (and whatever Auto-Submitted says)
    else:
        return None
    evidence = {"detector": detector, "subject": subject[:200]}
    dead = _says_dead(_own_words(text))
    if not failed_header and not dead and ((temporary and not permanent) or (daemon and _WARNING_SUBJECT.search(subject))):
        return Report("delivery_notice", recipients=temporary or _original_to(msg),
                      reason="delivery delayed, still being retried", evidence=evidence)
    words = _own_words(text)
    ours = set(mime.addresses(msg, "To"))
    recipients = (
        _unique([*permanent, *temporary, *failed_header])
        or _rcpt_to(words)
        or _listed(words)
        or _original_to(msg)
        or _unique(a for a in _addresses_near_errors(words) if a not in ours)
        or _unique(a for a in _addresses_on_failure_lines(words) if a not in ours)
        or _inline_original_to(text[len(words) :] or text)
    )
    status = _text_status(words)
    hard = _hard(status, words)
    cause = reasons.reason_of(status, _quoted_replies(words), words, _domains(recipients), gateway=reasons.from_gateway(msg.get_all))
    return Report("bounce", hard=hard, recipients=recipients, status=status, reason=_describe(status, hard),
                  cause=cause, evidence=evidence)


def _null_sender(msg: Message) -> bool:
    """Sent with the null reverse path, as delivery reports are: 'Return-Path: <>' or 'From: <>'."""
    if msg.get("Return-Path") is not None and mime.header(msg, "Return-Path").strip("<> ") == "":
        return True
    sender = mime.header(msg, "From")
    return msg.get("From") is not None and not mime.addresses(msg, "From") and sender.strip("<> \"") == ""


def _says_dead(words: str) -> bool:
    """Does a line of the report say the address does not exist?"""
    return any(reasons.wording_reason(line) in _DEAD_ADDRESS for line in words[:5000].splitlines())


def _rcpt_to(words: str) -> tuple[str, ...]:
    """The envelope recipient a report quotes ('RCPT TO: x@y', as Apache James and Verizon write it)."""
    return _unique(a.lower() for a in re.findall(r"^\s*RCPT TO:\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$", words, re.IGNORECASE | re.MULTILINE))


_LIST_HEAD = re.compile(
    r"(following|these) (recipient|address|destination)[\w()]*[^\n]{0,60}?(could not be (reached|delivered)|failed|not be delivered|undeliverable|permanent fatal errors)[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _listed(words: str) -> tuple[str, ...]:
    """The addresses listed under a heading such as Exchange's 'The following recipient(s) could not be
    reached:', up to the first blank line after them."""
    head = _LIST_HEAD.search(words)
    if head is None:
        return ()
    found: list[str] = []
    for line in words[head.end() :].split("\n")[1:]:
        if not line.strip():
            if found:
                break
            continue
        first = _TEXT_ADDRESS.search(line)
        if first is not None and line[: first.start()].strip(" \t<*\"'-:") == "":
            found.append(first.group(0).lower())
    return _unique(found)


def _not_ours(msg: Message, text: str, found: tuple[str, ...]) -> tuple[str, ...]:
    """The failed recipients without our own addresses (the report's To, the returned message's
    sender) and without Message-IDs, which look like addresses."""
    ours = set(mime.addresses(msg, "To", "Cc"))
    ids = {i.strip("<>").lower() for name in ("Message-ID", "In-Reply-To", "References") for i in mime.message_ids(mime.header(msg, name))}
    for attached in mime.attached_messages(msg):
        ours.update(mime.addresses(attached, "From", "Sender", "Return-Path"))
        ids.update(i.strip("<>").lower() for name in ("Message-ID", "In-Reply-To", "References") for i in mime.message_ids(mime.header(attached, name)))
    ids.update(i.strip("<>").lower() for i in _ANY_ID.findall(text))
    return tuple(a for a in found if a not in ours and a not in ids)


def _lines(text: str) -> str:
    """Text with uniform line ends: some servers end lines with a bare CR."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _loose_text(msg: Message) -> str:
    """The text of a report whose parts the parser could not split (a boundary it could not read)."""
    for part in mime.parts(msg):
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, str) and payload.strip():
            return mime.unmangle(payload[: mime.TEXT_LIMIT])
    return ""


def _flufl(msg: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(temporary, permanent) failed recipients by flufl.bounce, as lower-cased text.

    One of its detectors fails, and logs an error, on a message without a From header; no bounce
    comes without one, so such a message is not shown to it.
    """
    if not getaddresses([str(msg.get("From", ""))]):
        return (), ()
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on a malformed message is no reason to lose the message
        log.debug("flufl.bounce could not read the message", exc_info=True)
        return (), ()
    return _decoded(temporary), _decoded(permanent)


def _decoded(addresses: Iterable[bytes]) -> tuple[str, ...]:
    found = (a.decode("ascii", "replace").strip("<>").lower() for a in addresses)
    return tuple(sorted(a for a in found if mime.ADDRESS.fullmatch(a)))


def _from_daemon(msg: Message) -> bool:
    """Sent by a mail system: its From, or the return path only mail systems use."""
    sender = mime.addresses(msg, "From")
    name = mime.header(msg, "From")
    path = mime.addresses(msg, "Return-Path")
    return bool(sender and _DAEMON.match(sender[0])) or bool(_DAEMON_NAME.search(name)) or bool(path and _DAEMON.match(path[0]))


def _codes_in(text: str) -> bool:
    return bool(_STATUS.search(text)) or bool(_REPLY_CODE.search(text))


def _code(text: str) -> str | None:
    """The enhanced status code ('5.1.1') in a field, if there is one."""
    found = _STATUS.search(text)
    return found.group(0) if found else None


def _text_status(text: str) -> str | None:
    """The first failure status code in free text: an enhanced code, else an SMTP reply code's class."""
    for found in _STATUS.finditer(text):
        if found.group(1) in "45":
            return found.group(0)
    reply = _REPLY_CODE.search(text)
    return f"{reply.group(1)}.0.0" if reply else None


def _hard(status: str | None, text: str) -> bool:
    """Permanent (5.x.x) against transient (4.x.x); without a code, permanent unless the text says otherwise."""
    if status:
        return status.startswith("5")
    return not _TRANSIENT_WORDS.search(text)


def _reply_of(diagnostic: str) -> str:
    """A Diagnostic-Code without its type when that is SMTP ('smtp; 550 ...' -> '550 ...'); another
    type ('X-Unix; ...') says where delivery failed, so it stays."""
    kind, _, rest = diagnostic.partition(";")
    return rest.strip() if rest and kind.strip().lower() == "smtp" else diagnostic


_REPLY_LINE = re.compile(r"^.*?(?<![\w.\-/])([45]\d\d[ \-:]|[45]\.\d{1,3}\.\d{1,3}\b|remote host said|reason:|said:).*$", re.IGNORECASE | re.MULTILINE)


_RECIPIENT_LINE = re.compile(r"^\s*[\"<]?[\w.+'=-]+@[\w-]+(\.[\w-]+)+[\">]?:?(\s|$)")


def _quoted_replies(words: str) -> str:
    """The lines of a report that quote a server's reply (a reply code, an enhanced status, 'Remote
    host said:'), each with the line after it, where replies often go on; those about the first
    failed recipient only, since the next may have failed for another reason."""
    lines = words.splitlines()
    found: list[str] = []
    for index, line in enumerate(lines):
        if found and _RECIPIENT_LINE.match(line):
            break
        if _REPLY_LINE.match(line):
            found += [line.strip(), *(lines[index + 1 : index + 2] if index + 1 < len(lines) else [])]
    return "\n".join(dict.fromkeys(line.strip() for line in found if line.strip()))


def _domains(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.rpartition("@")[2] for a in addresses if "@" in a))


def _own_words(text: str) -> str:
    """The report's own words, without the returned copy of our message that often follows them."""
    found = _RETURNED_COPY.search(text)
    return text[: found.start()] if found else text


def _describe(status: str | None, hard: bool, diagnostic: str = "") -> str:
    """'permanent failure; 5.1.1; bad destination mailbox address; <what the server said>'."""
    kind = "permanent failure" if hard else "temporary failure"
    detail = _DESCRIPTIONS.get(status.split(".", 1)[1]) if status else None
    text = diagnostic.split(";", 1)[-1].strip() if diagnostic else ""
    return "; ".join(p for p in (kind, status or "", detail or "", text[:200]) if p)


def _original_to(msg: Message) -> tuple[str, ...]:
    for attached in mime.attached_messages(msg):
        found = mime.addresses(attached, "To")
        if found:
            return found
    return ()


def _inline_original_to(copy: str) -> tuple[str, ...]:
    """The To: of a returned copy pasted into the report's text."""
    found = re.search(r"^To:\s*(.+)$", copy, re.MULTILINE)
    return _unique(a.lower() for a in _TEXT_ADDRESS.findall(found.group(1))) if found else ()


def _addresses_near_errors(text: str) -> tuple[str, ...]:
    """Addresses on lines that also hold an error code or an angle-bracketed address, in order."""
    found = []
    for line in text.splitlines():
        if re.search(r"message-id|in-reply-to|references", line, re.IGNORECASE):
            continue
        if _codes_in(line) or re.search(r"<[^<>\s]+@[^<>\s]+>", line):
            found += _TEXT_ADDRESS.findall(line)
    return _unique(a.lower() for a in found)


def _addresses_on_failure_lines(text: str) -> tuple[str, ...]:
    """Addresses on lines that say delivery failed, or why ('Your message to x@y was not delivered')."""
    found = []
    for line in text.splitlines():
        if "@" in line and (_BOUNCE_TEXT.search(line) or reasons.wording_reason(line)):
            found += _TEXT_ADDRESS.findall(line)
    return _unique(a.lower() for a in found)


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in addresses if a))
