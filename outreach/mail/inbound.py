"""Inbound mail: what arrived (parse) and what it means for a sequence (classify). Pure: no I/O, no clock.

The order of the tests matters. Delivery reports come first: many bounces carry Auto-Submitted,
In-Reply-To or References, and would otherwise pass for auto-replies or answers. A list server's
refusal of our message (not a member, a loop) is a bounce too, and comes next. An opt-out sent
to our List-Unsubscribe address comes next (mail clients send those automatically), then meeting
answers, auto-replies, bulk mail, opt-out requests a person wrote, and last a person's reply.

Mail from a list or a bulk sender (List-Id, List-Unsubscribe, Precedence: list, bulk or junk) is
never read as an opt-out: its "unsubscribe" is a footer's. When it answers no message (no
In-Reply-To or References, as no newsletter has, nor the null return path of an automatic
response) it is bulk mail, which stops and pauses nothing; when it does, a list relayed a
person's answer or an autoresponder marked its notice, and it is read as that. Whether a message belongs to one of our threads at all is decided later, by thread
matching.

Neither function raises, whatever the bytes: the poller must be able to record every message.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
from dataclasses import dataclass, field
from email.message import Message

from outreach.mail import inbound_auto as auto
from outreach.mail import inbound_lists as lists
from outreach.mail import inbound_mime as mime
from outreach.mail import inbound_reply as reply
from outreach.mail import inbound_reports as reports

log = logging.getLogger(__name__)


class Kind(enum.StrEnum):
    BOUNCE = "bounce"  # delivery failed, for good (hard) or for now (soft)
    AUTO_REPLY = "auto_reply"  # out of office, autoresponder, ticket acknowledgement
    UNSUBSCRIBE = "unsubscribe"  # the person asks us to stop
    REPLY = "reply"  # a person answered
    COMPLAINT = "complaint"  # a spam complaint (feedback report)
    DELIVERY_NOTICE = "delivery_notice"  # delivered, relayed, or delayed and still being retried: not a failure
    BULK = "bulk"  # a newsletter, marketing, a list's traffic: logged, never acted on


@dataclass(frozen=True)
class Inbound:
    """The headers thread matching and the event log need, read from a message that may be broken."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_addr: str  # lower-cased; '' when there is none
    to_addrs: tuple[str, ...]
    subject: str
    date: dt.datetime | None  # aware, UTC
    fallback_key: str  # sha256 of a few headers and the body: an identity for mail without Message-ID


@dataclass(frozen=True)
class Classification:
    kind: Kind
    reason: str
    hard: bool | None = None  # bounces: permanent (5.x.x) rather than temporary (4.x.x)
    recipients: tuple[str, ...] = ()  # bounces and complaints: the addresses concerned
    status: str | None = None  # enhanced status code, e.g. "5.1.1"
    cause: str | None = None  # bounces: why delivery failed, a bounce_reasons.Reason ('userunknown', 'blocked', ...)
    new_text: str = ""  # replies and opt-outs: what the person wrote, without quoted history and signature
    until: dt.date | None = None  # auto-replies: the return date they state
    meeting: str | None = None  # "accepted", "declined" or "tentative", from an iCalendar reply
    original_message_id: str | None = None  # reports: the Message-ID of the message they are about
    evidence: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # for the event log


@dataclass(frozen=True)
class _Mail:
    msg: Message
    inbound: Inbound


@dataclass(frozen=True)
class Parsed:
    """A message read once: its headers now, its meaning on demand."""

    inbound: Inbound
    mail: _Mail | None  # None when the headers could not be read at all
    error: str = ""

    def classify(self, *, received: dt.datetime | None = None, return_date: bool = True) -> Classification:
        """What the message is. `received` (else its Date) anchors relative return dates ("back on Monday").
        Without `return_date`, an auto-reply's return date is left for `with_return_date` (reading it
        costs milliseconds, worth it only for a notice about one of our threads)."""
        if self.mail is None:
            return Classification(Kind.REPLY, reason="unreadable message", evidence={"error": self.error})
        try:
            return _classify(self.mail, received, return_date)
        except Exception as exc:  # a message no rule can read may still be a person's answer: treat it as one
            log.warning("message could not be classified", exc_info=True)
            return Classification(Kind.REPLY, reason="unreadable message", evidence={"error": type(exc).__name__})

    def with_return_date(self, found: Classification, *, received: dt.datetime | None = None) -> Classification:
        """An auto-reply classified without its return date, with it."""
        if found.kind is not Kind.AUTO_REPLY or found.until is not None or self.mail is None:
            return found
        try:
            return _auto_reply(self.mail, _fresh_or_whole(self.mail), received, found.evidence, True)
        except Exception:  # a notice whose date cannot be read is still a notice
            log.warning("the return date could not be read", exc_info=True)
            return found


def read(raw: bytes) -> Parsed:
    """Parse a message once, for both its identity and its classification. Never raises."""
    try:
        mail = _read(raw)
    except Exception as exc:  # no byte sequence may stop the poller; such a message is still recorded
        log.warning("unreadable message headers", exc_info=True)
        return Parsed(_unreadable(raw), None, type(exc).__name__)
    return Parsed(mail.inbound, mail)


def parse(raw: bytes) -> Inbound:
    """The identity and threading headers of a message."""
    return read(raw).inbound


def classify(raw: bytes, *, received: dt.datetime | None = None) -> Classification:
    """What the message is. `received` (else its Date) anchors relative return dates ("back on Monday")."""
    return read(raw).classify(received=received)


def _read(raw: bytes) -> _Mail:
    msg = mime.load(raw)
    from_addrs = mime.addresses(msg, "From")
    to_addrs = mime.addresses(msg, "To", "Cc")
    subject = mime.header(msg, "Subject")
    date_header = mime.header(msg, "Date")
    from_addr = from_addrs[0] if from_addrs else ""
    ids = mime.message_ids(mime.header(msg, "Message-ID"))
    in_reply_to = mime.message_ids(mime.header(msg, "In-Reply-To"))
    inbound = Inbound(
        message_id=ids[0] if ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=mime.message_ids(mime.header(msg, "References")),
        from_addr=from_addr,
        to_addrs=to_addrs,
        subject=subject,
        date=mime.date(date_header),
        fallback_key=mime.fallback_key(raw, (from_addr, ",".join(to_addrs), subject, date_header)),
    )
    return _Mail(msg, inbound)


def _unreadable(raw: bytes) -> Inbound:
    return Inbound(None, None, (), "", (), "", None, hashlib.sha256(raw).hexdigest())


def _fresh_or_whole(mail: _Mail) -> str:
    text, _ = mime.text_body(mail.msg)
    return reply.new_text(text) or text


def _classify(mail: _Mail, received: dt.datetime | None, return_date: bool = True) -> Classification:
    text, source = mime.text_body(mail.msg)
    report = reports.detect(mail.msg, text)
    if report is not None:
        return _from_report(report, mail.msg, text)
    refused = lists.refusal(mail.msg, mail.inbound.subject, text)
    if refused is not None:
        return Classification(
            Kind.BOUNCE, reason=f"refused by the list server: {refused.said}", hard=True, recipients=refused.recipients,
            cause=refused.cause.value, original_message_id=_answered(mail.inbound),
            evidence={"detector": "list server", "sender": refused.sender},
        )
    bulk = lists.bulk(mail.msg)
    answer = _responds(mail)
    mailto = None if bulk else _mailto_opt_out(mail)
    if mailto is not None:
        return Classification(Kind.UNSUBSCRIBE, reason="opt-out sent to our unsubscribe address", evidence=mailto)
    fresh = reply.new_text(text)
    meeting = reply.meeting_answer(mail.msg)
    if meeting is not None:
        evidence = {"detector": "icalendar", "partstat": meeting}
        return Classification(Kind.REPLY, reason=f"meeting {meeting}", new_text=fresh, meeting=meeting, evidence=evidence)
    automatic = auto.detect(mail.msg, mail.inbound.subject, fresh or text, received or mail.inbound.date, answer=answer)
    if automatic is not None:
        return _auto_reply(mail, fresh or text, received, automatic, return_date)
    if bulk is not None and not answer:
        return Classification(Kind.BULK, reason=f"list or bulk mail ({bulk['header']})", evidence=bulk)
    phrase = None if bulk else reply.opt_out_phrase(fresh)
    if phrase is not None:
        return Classification(Kind.UNSUBSCRIBE, reason=f"asks to stop: {phrase!r}", new_text=fresh,
                              evidence={"phrase": phrase})
    return Classification(Kind.REPLY, reason="a person's reply", new_text=fresh, evidence={"body": source})


def _from_report(report: reports.Report, msg: Message, text: str) -> Classification:
    return Classification(
        Kind(report.kind),
        reason=report.reason,
        hard=report.hard,
        recipients=report.recipients,
        status=report.status,
        cause=report.cause.value if report.cause is not None else None,
        original_message_id=reports.original_message_id(msg, text),
        evidence=report.evidence,
    )


def _responds(mail: _Mail) -> bool:
    """Whether the message answers another: it names one (In-Reply-To, References), or it came
    with the null return path automatic responses are sent with (RFC 3834), which no bulk sender
    uses, since it wants its bounces back."""
    if mail.inbound.in_reply_to or mail.inbound.references:
        return True
    return mail.msg.get("Return-Path") is not None and mime.header(mail.msg, "Return-Path").strip("<> ") == ""


def _answered(inbound: Inbound) -> str | None:
    """The message a notice answers, by its threading headers."""
    return inbound.in_reply_to or (inbound.references[-1] if inbound.references else None)


def _mailto_opt_out(mail: _Mail) -> dict[str, str] | None:
    """A message to our List-Unsubscribe mailto: subject 'unsubscribe', or Apple Mail's own header."""
    if mail.inbound.subject.strip().lower() == "unsubscribe":
        return {"subject": mail.inbound.subject}
    if mime.header(mail.msg, "X-Apple-Unsubscribe").lower() == "true":
        return {"header": "X-Apple-Unsubscribe"}
    return None


def _auto_reply(mail: _Mail, text: str, received: dt.datetime | None, evidence: dict[str, str], return_date: bool) -> Classification:
    base = received or mail.inbound.date
    until = auto.return_date(f"{mail.inbound.subject}\n{text}", base) if base is not None and return_date else None
    reason = f"auto-reply, away until {until.isoformat()}" if until else "auto-reply"
    return Classification(Kind.AUTO_REPLY, reason=reason, until=until, evidence=evidence)
