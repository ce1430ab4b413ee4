"""The emails the people write: replies in the thread with the usual quote, a meeting acceptance
with its calendar part, an out-of-office, an owner's answer from their own mail client, and the
delivery report a mail system returns for an address that does not exist (RFC 3464)."""

from __future__ import annotations

import datetime as dt
import random
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from outreach.clock import UTC
from outreach.demo.cast import Behaviour, Played, Received, weekday
from outreach.mail.subjects import reply_subject


def _message_id(rng: random.Random, domain: str) -> str:
    return f"<{rng.getrandbits(64):016x}.{rng.getrandbits(32):08x}@{domain}>"


def _quoted(mail: Received) -> str:
    lines = mail.text.strip().splitlines()[:14]
    return f"On {format_datetime(mail.at)}, {mail.sender_name} <{mail.sender}> wrote:\n" + "\n".join(f"> {line}".rstrip() for line in lines)


def _threaded(lead: Played, mail: Received, at: dt.datetime, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((lead.card.name, lead.card.email))
    msg["To"] = formataddr((mail.sender_name, mail.sender))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at.astimezone(lead.card.tz))
    msg["Message-ID"] = _message_id(lead.rng, lead.card.domain)
    msg["In-Reply-To"] = mail.message_id
    msg["References"] = " ".join((*mail.references, mail.message_id))
    msg.set_content(body)
    return msg


def answer(lead: Played, mail: Received, at: dt.datetime) -> bytes:
    """A reply in the thread, with the usual quote of what it answers; a meeting acceptance carries its calendar part."""
    meeting = _meeting_time(lead, at)
    text = lead.persona.text.format(owner=lead.card.owner_first, meeting=f"{meeting:%A} at {meeting:%H:%M}")
    msg = _threaded(lead, mail, at, reply_subject(mail.subject), f"{text}\n\n{_quoted(mail)}\n")
    if lead.persona.behaviour is Behaviour.MEETING:
        msg.add_alternative(_calendar_reply(lead, mail, at, meeting), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes(policy=policy.SMTP)


def _meeting_time(lead: Played, at: dt.datetime) -> dt.datetime:
    """Two working days on, at 10:00 the lead's time."""
    day = weekday(lead.card.tz, at + dt.timedelta(days=2))
    return dt.datetime.combine(day, dt.time(10), tzinfo=lead.card.tz)


def _calendar_reply(lead: Played, mail: Received, at: dt.datetime, meeting: dt.datetime) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR", "METHOD:REPLY", "PRODID:Microsoft Exchange Server 2016", "VERSION:2.0", "BEGIN:VEVENT",
        f'ATTENDEE;PARTSTAT=ACCEPTED;CN="{lead.card.name}":mailto:{lead.card.email}',
        f'ORGANIZER;CN="{mail.sender_name}":mailto:{mail.sender}',
        f"UID:{lead.rng.getrandbits(64):016x}@appneural", f"DTSTAMP:{at.astimezone(UTC):{stamp}}",
        f"DTSTART:{meeting.astimezone(UTC):{stamp}}", f"DTEND:{(meeting + dt.timedelta(minutes=45)).astimezone(UTC):{stamp}}",
        f"SUMMARY:Accepted: {lead.card.company or lead.card.name} and APPNEURAL: proposal walk-through", "SEQUENCE:0", "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def out_of_office(lead: Played, mail: Received, at: dt.datetime) -> bytes:
    assert lead.back_on is not None
    back = lead.back_on
    body = (
        f"Thank you for your email. I am out of the office until {back:%A} {back.day} {back:%B} {back:%Y} with limited access to email.\n\n"
        f"For anything urgent, please contact our office on the main number.\n\n{lead.card.name}\n{lead.card.company}\n"
    )
    msg = _threaded(lead, mail, at, f"Automatic reply: {mail.subject}", body)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    return msg.as_bytes(policy=policy.SMTP)


def owners_answer(lead: Played, ours: Received, raw_reply: bytes, at: dt.datetime) -> bytes:
    """What the owner writes back from their own mail client: short, in the thread of the lead's reply."""
    theirs = message_from_bytes(raw_reply, policy=policy.default)
    msg = EmailMessage()
    msg["From"] = formataddr((ours.sender_name, ours.sender))
    msg["To"] = formataddr((lead.card.name, lead.card.email))
    msg["Subject"] = reply_subject(str(theirs["Subject"]))
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = _message_id(lead.rng, ours.sender.rpartition("@")[2])
    msg["In-Reply-To"] = str(theirs["Message-ID"])
    msg["References"] = f"{theirs['References']} {theirs['Message-ID']}"
    first = lead.card.name.split()[0]
    msg.set_content(f"Hi {first},\n\nThank you for coming back to me. I'll send you the details today.\n\nBest regards,\n{ours.sender_name}\n")
    return msg.as_bytes(policy=policy.SMTP)


def bounce_report(lead: Played, mail: Received, at: dt.datetime) -> bytes:
    """What the sending mailbox's mail system returns when the lead's server refuses the address (RFC 3464)."""
    rcpt = lead.card.email
    ours = f"mail.{mail.sender.rpartition('@')[2]}"
    theirs = f"mx.{lead.card.domain}"
    boundary = f"{lead.rng.getrandbits(48):012X}.{int(at.timestamp())}/{ours}"
    reply = f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@{ours}>
To: {mail.sender}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: {_message_id(lead.rng, ours)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {ours}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{rcpt}>: host {theirs}[192.0.2.25] said: {reply} (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {ours}
Arrival-Date: {format_datetime(mail.at)}

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; {theirs}
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{mail.headers}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()
