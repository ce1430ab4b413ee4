"""The header fields inbound mail is read by: one list for the header triage, the IMAP FETCH of
headers and the classifier, so that what decides is what was fetched. Names as they are written;
compare them without regard to case."""

from __future__ import annotations

THREADING = ("Message-ID", "In-Reply-To", "References")
SENDERS = ("From", "Reply-To")  # who wrote a message that came in
RECIPIENTS = ("To", "Cc")  # to whom a message we sent went
IDENTITY = ("Subject", "Date")
JMRP_RECIPIENT = "X-HmXmrOriginalRecipient"  # Microsoft's older complaint form: the complained-of message, marked with who complained
REPORT = ("Content-Type", "Return-Path", "X-Failed-Recipients", JMRP_RECIPIENT)  # multipart/report, the null sender of delivery reports, Exim's list of failures, a bare JMRP complaint
# The marks filtering gateways put on their delivery reports (bounce_reasons.FILTERING_GATEWAYS): read
# with a report's body, to tell a gateway's "user unknown" from a mailbox's.
GATEWAY_MARKS = ("X-NAI-Header", "X-Mailer", "X-SEF-Processed", "X-AHMailID", "X-MXL-Hash", "X-MX-Bounce", "Received")
BODY = ("Content-Transfer-Encoding", "Content-Disposition", "Content-Description", *GATEWAY_MARKS)  # read with the body, not before

AUTO_SUBMITTED = "Auto-Submitted"  # RFC 3834: anything but "no" is a machine's
PRECEDENCE = "Precedence"
# Precedence values of automatic mail: 'auto_reply' always marks an auto-reply; 'bulk' and 'junk'
# mark one only on an answer (vacation programs set them), else a bulk sender's mail (LIST_PRECEDENCE)
AUTOMATIC_PRECEDENCE = ("auto_reply", "bulk", "junk")
# Present (with any value but "no"): the message was sent automatically. Outlook puts
# X-Auto-Response-Suppress on ordinary mail too, so that one is no evidence and is not here.
AUTO_REPLY = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-AutoReply-From",
    "X-Mail-Autoreply",
    "X-Auto-Response",
    "X-MS-Exchange-Inbox-Rules-Loop",
    "X-MS-Exchange-Generated-Message-Source",
)
# Mail a list or a bulk sender sent: its "unsubscribe" is a footer, never a lead's request.
LIST = ("List-Id", "List-Unsubscribe", "List-Post")
LIST_PRECEDENCE = ("list", "bulk", "junk")
# Set by list software (fml, ezmlm, Mailman; RFC 2369's other fields) on what a list sends, its own notices too
LIST_SERVER = ("X-MLServer", "Mailing-List", "X-Mailman-Version", "List-Subscribe", "List-Help", "List-Owner")
APPLE_UNSUBSCRIBE = "X-Apple-Unsubscribe"  # Apple Mail's unsubscribe button, writing to our List-Unsubscribe mailto

AUTOMATIC = (AUTO_SUBMITTED, PRECEDENCE, *AUTO_REPLY, APPLE_UNSUBSCRIBE, *LIST, *LIST_SERVER)  # what the classifier reads before the body
FETCHED = (*THREADING, *SENDERS, *RECIPIENTS, *IDENTITY, *REPORT, *AUTOMATIC)  # what the poller reads of every new message


def is_automatic_value(value: str | None) -> bool:
    """An Auto-Submitted or auto-reply header's value that says a machine sent the message."""
    return value is not None and value.split(";", 1)[0].strip().lower() != "no"
