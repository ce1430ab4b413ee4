"""Inbound classification, case by case, on small hand-written messages."""

from __future__ import annotations

import datetime as dt
import json
import time
from email.message import EmailMessage

import pytest

from outreach.mail.inbound import Kind, classify, parse

UTC = dt.UTC
WEDNESDAY = dt.datetime(2024, 6, 5, 9, 30, tzinfo=UTC)
ATTRIBUTION = "On Mon, 3 Jun 2024 at 10:00, Asha Rao <asha@ours.example> wrote:"
OUR_EMAIL = [
    "Hi Ben, following up on the proposal we sent last week.",
    "",
    "If you'd rather not hear from us, reply 'unsubscribe' or click https://ours.example/u/abc",
    "Please stop emailing me? Just say so: remove me and we will.",
]


def message(body: str = "", *, subject: str = "Re: Our proposal", html: str | None = None, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ben Lee <Ben.Lee@Client.example>"
    msg["To"] = "asha@ours.example"
    msg["Subject"] = subject
    msg["Date"] = "Wed, 05 Jun 2024 11:30:00 +0200"
    msg["Message-ID"] = "<answer-1@client.example>"
    msg["In-Reply-To"] = "<proposal-1@ours.example>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if html is None:
        msg.set_content(body)
    else:
        msg.set_content(html, subtype="html")
    return msg


def raw(body: str = "", **kwargs: str) -> bytes:
    return message(body, **kwargs).as_bytes()


def quoted(*lines: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in lines)


# -- parse --------------------------------------------------------------------------------------


def test_parse_reads_the_threading_headers() -> None:
    msg = message("Thanks", References="<a@ours.example> <proposal-1@ours.example>", Cc="Dev <DEV@client.example>")
    inbound = parse(msg.as_bytes())
    assert inbound.message_id == "<answer-1@client.example>"
    assert inbound.in_reply_to == "<proposal-1@ours.example>"
    assert inbound.references == ("<a@ours.example>", "<proposal-1@ours.example>")
    assert inbound.from_addr == "ben.lee@client.example"
    assert inbound.to_addrs == ("asha@ours.example", "dev@client.example")
    assert inbound.subject == "Re: Our proposal"
    assert inbound.date == dt.datetime(2024, 6, 5, 9, 30, tzinfo=UTC)


def test_parse_decodes_encoded_and_raw_8bit_headers() -> None:
    data = (
        b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.de>\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe =?iso-8859-1?q?aus_K=F6ln?=\n"
        b"\nHallo\n"
    )
    inbound = parse(data)
    assert inbound.subject == "Grüße aus Köln"
    assert inbound.from_addr == "jorg@example.de"
    assert inbound.message_id is None


def test_an_encoded_display_name_that_looks_like_an_address_stays_a_name() -> None:
    inbound = parse(b"From: =?utf-8?q?boss=40ours.example?= <mallory@evil.example>\n\nhi\n")
    assert inbound.from_addr == "mallory@evil.example"


def test_fallback_key_is_stable_and_tells_messages_apart() -> None:
    body = "Sure, let's talk on Friday."
    without_id = message(body)
    del without_id["Message-ID"]
    data = without_id.as_bytes()
    assert parse(data).message_id is None
    assert parse(data).fallback_key == parse(data).fallback_key
    assert parse(data.replace(b"\n", b"\r\n")).fallback_key == parse(data).fallback_key  # as IMAP delivers it
    other = message("Sure, let's talk on Monday.")
    del other["Message-ID"]
    assert parse(other.as_bytes()).fallback_key != parse(data).fallback_key
    assert len(parse(data).fallback_key) == 64


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Subject: =?x-unknown?b?////?=\nContent-Type: text/plain; charset=x-no-such\n\n\xff\xfe\xe9t\xe9\n",
        (
            b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n"
        ),
        b"Date: Mon, 99 Foo 99999 99:99:99 +9999\nFrom: <<<>>>@@@\nMessage-ID: <>\nReferences: <<<\n\nx",
        b"Content-Type: text/html\n\n<div><blockquote><p>unclosed <b>tags <script>alert(1)",
    ],
)
def test_broken_messages_parse_and_classify(data: bytes) -> None:
    inbound = parse(data)
    assert len(inbound.fallback_key) == 64
    result = classify(data)
    assert "error" not in result.evidence
    json.dumps(result.evidence)


def test_a_latin1_body_declared_as_utf8_is_still_read() -> None:
    data = b"From: a@b.example\nSubject: Re: x\nContent-Type: text/plain; charset=utf-8\n\nMerci, \xe0 bient\xf4t\n"
    assert classify(data).new_text == "Merci, à bientôt"


def test_nested_multiparts_are_read_to_the_text() -> None:
    inner = EmailMessage()
    inner.set_content("Yes, Thursday works for me.")
    inner.add_alternative("<p>Yes, Thursday works for me.</p>", subtype="html")
    outer = message("")
    outer.clear_content()
    outer.make_mixed()
    level = outer
    for _ in range(30):
        child = EmailMessage()
        child.make_mixed()
        level.attach(child)
        level = child
    level.attach(inner)
    result = classify(outer.as_bytes())
    assert result.kind is Kind.REPLY
    assert result.new_text == "Yes, Thursday works for me."


def test_parts_nested_thousands_deep_do_not_break_anything() -> None:
    depth = 5000
    head = b"From: a@b.example\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    parts = b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth))
    data = head + parts + b"--b%d\nContent-Type: text/plain\n\nhello\n" % depth
    assert parse(data).subject == "deep"
    assert classify(data).kind is Kind.REPLY


def test_a_20_mb_attachment_is_not_decoded() -> None:
    msg = message("Signed contract attached. Thanks!")
    msg.add_attachment(b"\x00" * (20 * 1024 * 1024), maintype="application", subtype="pdf", filename="contract.pdf")
    data = msg.as_bytes()
    start = time.perf_counter()
    inbound = parse(data)
    result = classify(data)
    elapsed = time.perf_counter() - start
    assert inbound.message_id == "<answer-1@client.example>"
    assert result.kind is Kind.REPLY
    assert result.new_text == "Signed contract attached. Thanks!"
    assert elapsed < 3, f"took {elapsed:.1f} s"


# -- replies ------------------------------------------------------------------------------------


def test_a_reply_keeps_what_the_person_wrote_only() -> None:
    body = "\n".join(["Thursday at 3 works. Send an invite?", "", "Ben", "", ATTRIBUTION, quoted(*OUR_EMAIL)])
    result = classify(raw(body))
    assert result.kind is Kind.REPLY
    assert result.new_text == "Thursday at 3 works. Send an invite?\n\nBen"
    assert result.evidence == {"body": "plain"}


def test_an_outlook_reply_ends_at_the_header_block() -> None:
    body = "\n".join(
        ["Looks fine to me.", "", "________________________________", "From: Asha Rao <asha@ours.example>",
         "Sent: Monday, June 3, 2024 10:00 AM", "To: Ben Lee <ben.lee@client.example>", "Subject: Our proposal", "",
         *OUR_EMAIL]
    )
    assert classify(raw(body)).new_text == "Looks fine to me."


def test_a_signature_and_a_phone_tagline_are_dropped() -> None:
    assert classify(raw("Agreed.\n\n-- \nBen Lee\nCTO, Client Ltd")).new_text == "Agreed."
    assert classify(raw("Agreed.\n\nSent from my iPhone")).new_text == "Agreed."
    prose = "Agreed.\nSent by courier yesterday, it should arrive on Friday."
    assert classify(raw(prose)).new_text == prose


def test_an_html_only_reply_is_read_as_text_without_its_quote() -> None:
    html = (
        "<div>Great, let's do it.</div><br><div class=gmail_quote><div>" + ATTRIBUTION + "</div>"
        "<blockquote class=gmail_quote><p>Hi Ben,</p><p>To unsubscribe, reply 'unsubscribe'.</p></blockquote></div>"
    )
    result = classify(raw(html=html))
    assert result.kind is Kind.REPLY
    assert result.new_text == "Great, let's do it."
    assert result.evidence == {"body": "html"}


def test_an_outlook_html_reply_ends_at_its_header_block() -> None:
    html = (
        "<div>Yes please, send it over.</div><div><br></div><div>Ben</div><hr>"
        "<div id=divRplyFwdMsg><b>From:</b> Asha Rao &lt;asha@ours.example&gt;<br><b>Sent:</b> Monday, June 3, 2024"
        "<br><b>To:</b> Ben Lee<br><b>Subject:</b> Our proposal</div>"
        "<div>Hi Ben, ... To unsubscribe, reply 'unsubscribe'.</div>"
    )
    result = classify(raw(html=html))
    assert result.kind is Kind.REPLY
    assert result.new_text == "Yes please, send it over.\n\nBen"


# -- opt-outs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Please unsubscribe me.",
        "Remove me from your list.",
        "Take me off your mailing list, thanks",
        "Please stop emailing me.",
        "Not interested, please stop.",
        "Do not contact me again.",
        "I already unsubscribed twice!",
        "Please opt me out",
        "No more emails please.",
        "Bitte keine E-Mails mehr.",
        "Merci de ne plus me contacter.",
        "Por favor, darme de baja.",
    ],
)
def test_a_request_to_stop_is_an_unsubscribe(text: str) -> None:
    result = classify(raw(f"{text}\n\n{ATTRIBUTION}\n{quoted(*OUR_EMAIL)}"))
    assert result.kind is Kind.UNSUBSCRIBE, result
    assert result.new_text == text
    assert result.evidence["phrase"]


@pytest.mark.parametrize(
    "text",
    [
        "I'm not interested in the basic plan but tell me about the enterprise one.",
        "Please don't unsubscribe me, I want to hear more.",
        "No need to remove me, I just moved teams.",
        "Not interested right now, maybe next quarter.",
        "We'll stop by your booth on Friday.",
        "Do not stop sending me these, they're useful!",
    ],
)
def test_words_near_an_opt_out_are_not_one(text: str) -> None:
    result = classify(raw(f"{text}\n\n{ATTRIBUTION}\n{quoted(*OUR_EMAIL)}"))
    assert result.kind is Kind.REPLY, result


def test_opt_out_words_in_the_quoted_history_do_not_count() -> None:
    outlook = "\n".join(["Sounds good, call me Tuesday.", "", "From: Asha Rao <asha@ours.example>",
                         "Sent: Monday, June 3, 2024 10:00", "Subject: Our proposal", "", *OUR_EMAIL])
    angle = "\n".join(["Sounds good, call me Tuesday.", "", ATTRIBUTION, quoted(*OUR_EMAIL)])
    bottom = "\n".join([ATTRIBUTION, quoted(*OUR_EMAIL), "", "Sounds good, call me Tuesday."])
    for body in (outlook, angle, bottom):
        result = classify(raw(body))
        assert result.kind is Kind.REPLY, body
        assert result.new_text == "Sounds good, call me Tuesday."


def test_mail_to_our_unsubscribe_address_is_an_unsubscribe() -> None:
    result = classify(raw("", subject="unsubscribe", Auto_Submitted="auto-generated"))
    assert result.kind is Kind.UNSUBSCRIBE
    assert result.evidence == {"subject": "unsubscribe"}


# -- auto-replies -------------------------------------------------------------------------------


def test_an_out_of_office_states_when_its_writer_is_back() -> None:
    body = "I am out of the office until Monday 17 June 2024 with no access to email."
    result = classify(raw(body, subject="Automatic reply: Our proposal", Auto_Submitted="auto-replied"))
    assert result.kind is Kind.AUTO_REPLY
    assert result.until == dt.date(2024, 6, 17)
    assert result.evidence == {"header": "Auto-Submitted", "value": "auto-replied"}
    assert result.new_text == ""


def test_a_relative_return_date_counts_from_when_the_notice_arrived() -> None:
    result = classify(raw("Thanks for your message. I'm travelling and back on Monday."), received=WEDNESDAY)
    assert result.kind is Kind.AUTO_REPLY
    assert result.until == dt.date(2024, 6, 10)


def test_a_return_date_in_another_language() -> None:
    german = raw("Ich bin bis zum 14.06.2024 nicht im Büro.", subject="Abwesenheitsnotiz: Ihr Angebot")
    assert classify(german).until == dt.date(2024, 6, 14)
    french = raw("Je suis absent jusqu'au 14 juin.", subject="Réponse automatique : Votre offre")
    assert classify(french, received=WEDNESDAY).until == dt.date(2024, 6, 14)


@pytest.mark.parametrize(
    "body",
    [
        "お世話になっております。本日より12月13日まで不在にしております。急ぎのご用件は佐藤までご連絡ください。",
        "Olá! Estou de férias e sem acesso ao e-mail. Volto no dia 9 de dezembro.",
        "Encontro-me fora do escritório até 13 de dezembro. Em caso de urgência, contate a recepção.",
    ],
)
def test_a_notice_without_headers_in_japanese_or_portuguese_is_an_auto_reply(body: str) -> None:
    result = classify(raw(body), received=dt.datetime(2024, 12, 5, 9, tzinfo=UTC))
    assert result.kind is Kind.AUTO_REPLY, result
    assert "phrase" in result.evidence


@pytest.mark.parametrize(
    ("body", "back"),
    [
        ("Ich bin vom 1. bis 18. Dezember im Urlaub und ab dem 21.12. wieder erreichbar.", dt.date(2024, 12, 21)),
        ("Ich bin bis einschließlich 18.12. nicht im Büro.", dt.date(2024, 12, 19)),
        ("I am out of the office through Friday 20 December.", dt.date(2024, 12, 23)),
        ("I am out of the office until 18 December.", dt.date(2024, 12, 18)),
        ("Ich bin bis einschließlich Freitag, 13.12. im Urlaub. Ab Montag bin ich wieder da.", dt.date(2024, 12, 16)),
        ("12月20日まで休暇をいただいております。", dt.date(2024, 12, 23)),
    ],
)
def test_the_return_date_is_the_day_back(body: str, back: dt.date) -> None:
    result = classify(raw(body, subject="Automatic reply: Our proposal", Auto_Submitted="auto-replied"),
                      received=dt.datetime(2024, 12, 5, 9, tzinfo=UTC))
    assert result.until == back


def test_list_and_bulk_mail_is_never_an_opt_out() -> None:
    footer = "Forwarding for comments.\n\nTo unsubscribe from this group, send an email to team+unsubscribe@client.example.\nPlease remove me."
    for headers in ({"List_Id": "<team.client.example>"}, {"List_Unsubscribe": "<mailto:u@client.example>"}, {"Precedence": "list"}):
        assert classify(raw(footer, **headers)).kind is Kind.REPLY, headers
        assert classify(raw("", subject="unsubscribe", **headers)).kind is not Kind.UNSUBSCRIBE, headers
    assert classify(raw(footer)).kind is Kind.UNSUBSCRIBE  # the same words from a person


NEWSLETTER = ("Our December news: three new plans for your team.\n\nThis is an automated message, please do not reply. "
              "Don't want these any more? Unsubscribe me: one click.")


@pytest.mark.parametrize(
    "headers",
    [{"Precedence": "bulk"}, {"Precedence": "junk"}, {"Precedence": "list"}, {"List_Id": "<news.client.example>"},
     {"List_Unsubscribe": "<https://client.example/u/1>"}],
    ids=lambda h: "-".join(h),
)
def test_a_newsletter_is_bulk_mail_neither_an_auto_reply_nor_a_reply_nor_an_opt_out(headers: dict[str, str]) -> None:
    msg = message(NEWSLETTER, subject="December news", **headers)
    del msg["In-Reply-To"]
    result = classify(msg.as_bytes(), received=WEDNESDAY)
    assert result.kind is Kind.BULK, result
    assert result.evidence["header"] == next(iter(headers)).replace("_", "-")


def test_a_person_answering_through_a_list_is_a_reply() -> None:
    result = classify(raw("Yes, Tuesday at 10 works for the whole team.", subject="[sales-team] Re: Our proposal",
                          List_Id="<sales-team.client.example>", Precedence="list"))
    assert result.kind is Kind.REPLY, result


@pytest.mark.parametrize(
    ("subject", "headers"),
    [("Re: Our proposal", {"Auto_Submitted": "auto-replied", "Precedence": "bulk"}),
     ("Out of office: Our proposal", {"Precedence": "bulk"}),
     ("Re: Our proposal", {"Precedence": "junk", "In_Reply_To": "<proposal-1@ours.example>"}),
     ("Thank you for your e-mail", {"Precedence": "bulk", "Return_Path": "<>"})],  # RFC 3834's null return path
)
def test_an_autoresponder_that_marks_its_notice_bulk_is_an_auto_reply(subject: str, headers: dict[str, str]) -> None:
    msg = message("I am away and will read your message when I am back.", subject=subject)
    del msg["In-Reply-To"]
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    assert classify(msg.as_bytes(), received=WEDNESDAY).kind is Kind.AUTO_REPLY


def test_the_return_date_can_be_read_later_the_same_as_at_once() -> None:
    from outreach.mail.inbound import read

    parsed = read(raw("Thanks for your message. I'm travelling and back on Monday.", subject="Automatic reply: Our proposal"))
    quick = parsed.classify(received=WEDNESDAY, return_date=False)
    assert quick.kind is Kind.AUTO_REPLY and quick.until is None and quick.reason == "auto-reply"
    later = parsed.with_return_date(quick, received=WEDNESDAY)
    assert later == parsed.classify(received=WEDNESDAY) and later.until == dt.date(2024, 6, 10)
    assert later.evidence == quick.evidence
    a_reply = read(raw("Monday works for me.")).classify(received=WEDNESDAY, return_date=False)
    assert read(raw("Monday works for me.")).with_return_date(a_reply, received=WEDNESDAY) is a_reply


def test_out_of_office_wording_alone_is_enough() -> None:
    body = ("Thank you for your email. I am currently out of the office with limited access to email "
            "and will return on June 17.")
    result = classify(raw(body), received=WEDNESDAY)
    assert result.kind is Kind.AUTO_REPLY
    assert result.until == dt.date(2024, 6, 17)
    assert "phrase" in result.evidence


def test_an_answer_to_a_subject_about_absence_is_not_an_auto_reply() -> None:
    assert classify(raw("Yes, tell me more.", subject="Re: Out of office cover for your team")).kind is Kind.REPLY


def test_past_absence_in_a_real_answer_is_not_an_auto_reply() -> None:
    result = classify(raw("Sorry, I was out of office last week. Yes, let's meet on Tuesday."))
    assert result.kind is Kind.REPLY


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Out of office"),
        ("Precedence", "auto_reply"),
        ("Precedence", "bulk"),
        ("X-MS-Exchange-Inbox-Rules-Loop", "ben.lee@client.example"),
        ("X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent"),
    ],
)
def test_auto_reply_headers(header: str, value: str) -> None:
    result = classify(raw("Thanks, we got your message.", **{header.replace("-", "_"): value}))
    assert result.kind is Kind.AUTO_REPLY
    assert result.evidence["header"] == header


def test_auto_response_suppress_alone_is_no_auto_reply() -> None:
    """Outlook sets it on ordinary mail too."""
    result = classify(raw("Thursday works.", X_Auto_Response_Suppress="All"))
    assert result.kind is Kind.REPLY


def test_auto_submitted_no_is_a_person() -> None:
    assert classify(raw("Thursday works.", Auto_Submitted="no")).kind is Kind.REPLY


def test_a_ticket_acknowledgement_is_an_auto_reply() -> None:
    body = "We have received your request. Your ticket number is 48213; an agent will answer within a day."
    assert classify(raw(body, subject="[Ticket #48213] Re: Our proposal")).kind is Kind.AUTO_REPLY


# -- meetings -----------------------------------------------------------------------------------


def _calendar(method: str, partstat: str) -> str:
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", f"METHOD:{method}", "BEGIN:VEVENT",
        "UID:call-1@ours.example", "DTSTAMP:20240605T093000Z", "DTSTART:20240606T130000Z",
        f"ATTENDEE;PARTSTAT={partstat};CN=Ben Lee:mailto:ben.lee@client.example",
        "ORGANIZER:mailto:asha@ours.example", "SUMMARY:Proposal call", "END:VEVENT", "END:VCALENDAR", "",
    ])


@pytest.mark.parametrize(("partstat", "answer"), [("ACCEPTED", "accepted"), ("DECLINED", "declined"), ("TENTATIVE", "tentative")])
def test_a_meeting_answer(partstat: str, answer: str) -> None:
    msg = message(f"Ben Lee has {answer} this invitation.", subject=f"{answer.title()}: Proposal call")
    msg.add_alternative(_calendar("REPLY", partstat), subtype="calendar", params={"method": "REPLY"})
    result = classify(msg.as_bytes())
    assert result.kind is Kind.REPLY
    assert result.meeting == answer


def test_an_invitation_is_no_answer() -> None:
    msg = message("Invitation: Proposal call")
    msg.add_alternative(_calendar("REQUEST", "NEEDS-ACTION"), subtype="calendar")
    assert classify(msg.as_bytes()).meeting is None


def test_a_broken_calendar_part_is_ignored() -> None:
    msg = message("Accepted")
    msg.add_alternative("BEGIN:VCALENDAR\nMETHOD:REPLY\nBEGIN:VEVENT\nATTENDEE;PARTSTAT=", subtype="calendar")
    result = classify(msg.as_bytes())
    assert result.kind is Kind.REPLY
    assert result.meeting is None


# -- delivery reports ---------------------------------------------------------------------------


def _dsn(action: str, status: str, *, original_id: str = "<proposal-1@ours.example>") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.client.example>\n"
        "To: asha@ours.example\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\n"
        f"In-Reply-To: {original_id}\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n"
        "--r\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not be delivered.\n\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.client.example\n\n"
        f"Final-Recipient: rfc822; Ben.Lee@client.example\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox problem\n\n"
        f"--r\nContent-Type: text/rfc822-headers\n\nMessage-ID: {original_id}\nTo: ben.lee@client.example\n\n--r--\n"
    ).encode()


def test_a_hard_bounce_beats_its_auto_reply_header() -> None:
    result = classify(_dsn("failed", "5.1.1"))
    assert result.kind is Kind.BOUNCE
    assert result.hard is True
    assert result.recipients == ("ben.lee@client.example",)
    assert result.status == "5.1.1"
    assert result.original_message_id == "<proposal-1@ours.example>"
    assert result.evidence["detector"] == "rfc3464"
    assert "bad destination mailbox address" in result.reason


def test_a_soft_bounce() -> None:
    result = classify(_dsn("failed", "4.2.2"))
    assert (result.kind, result.hard, result.status) == (Kind.BOUNCE, False, "4.2.2")


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_delays_and_successes_are_notices(action: str) -> None:
    result = classify(_dsn(action, "4.4.7" if action == "delayed" else "2.0.0"))
    assert result.kind is Kind.DELIVERY_NOTICE
    assert result.hard is None


def test_a_bounce_without_a_report_part() -> None:
    data = (
        b"From: MAILER-DAEMON@mx.client.example\nTo: asha@ours.example\nSubject: failure notice\n\n"
        b"Sorry, we were unable to deliver your message to the following address.\n\n"
        b"<ben.lee@client.example>:\n550 5.1.1 <ben.lee@client.example>: Recipient address rejected: User unknown\n"
    )
    result = classify(data)
    assert (result.kind, result.hard, result.status) == (Kind.BOUNCE, True, "5.1.1")
    assert result.recipients == ("ben.lee@client.example",)


def test_a_feedback_report_is_a_complaint() -> None:
    data = (
        b"From: feedback@fbl.example\nTo: abuse@ours.example\nSubject: FW: Our proposal\n"
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\n\n"
        b"--f\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        b"--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n"
        b"Original-Rcpt-To: ben.lee@client.example\n\n"
        b"--f\nContent-Type: message/rfc822\n\nMessage-ID: <proposal-1@ours.example>\nTo: ben.lee@client.example\n\nHi\n"
        b"--f--\n"
    )
    result = classify(data)
    assert result.kind is Kind.COMPLAINT
    assert result.recipients == ("ben.lee@client.example",)
    assert result.original_message_id == "<proposal-1@ours.example>"


def test_a_reply_about_bounces_is_no_bounce() -> None:
    body = "Our bounce rate was 2%; 421 of them came back from one domain. Can you help?"
    assert classify(raw(body, subject="Re: Undelivered mail and bounce rates")).kind is Kind.REPLY


def test_a_person_forwarding_a_message_is_no_bounce() -> None:
    msg = message("FYI, see the attached.")
    msg.add_attachment(message("Our proposal"))
    assert classify(msg.as_bytes()).kind is Kind.REPLY


# -- list servers -------------------------------------------------------------------------------


def _list_notice(sender: str, subject: str, body: str, **headers: str) -> bytes:
    msg = message(body, subject=subject, **headers)
    del msg["From"]
    msg["From"] = sender
    msg["References"] = "<proposal-1@ours.example>"
    return msg.as_bytes()


@pytest.mark.parametrize(
    ("sender", "subject", "body", "headers", "cause"),
    [
        ("sales-admin@client.example", "You asha@ours.example are not member (sales ML)",
         "You are not a member of this mailing list <sales@client.example>.\n\nIf you know the general guide of this list, send 'guide'.",
         {"X_MLServer": "fml [fml 4.0.3 release]"}, "rejected"),
        ("sales-owner@client.example", "Your message to Sales was rejected",
         "You are not allowed to post to this mailing list, and your message has been automatically rejected.",
         {"List_Id": "<sales.client.example>", "List_Post": "<mailto:sales@client.example>", "X_Mailman_Version": "2.1.39"},
         "rejected"),
        ("owner-sales@client.example", "Loop Alert: Duplicated Message-ID (sales ML)",
         "Duplicated Message-ID in <sales@client.example>.\n\nOriginal mail as follows:\n\n   To: sales@client.example",
         {"Mailing_List": "contact sales-help@client.example; run by ezmlm"}, "systemerror"),
    ],
)
def test_a_list_servers_refusal_of_our_message_is_a_bounce(sender: str, subject: str, body: str, headers: dict[str, str], cause: str) -> None:
    result = classify(_list_notice(sender, subject, body, **headers))
    assert result.kind is Kind.BOUNCE, result
    assert (result.cause, result.hard) == (cause, True)
    assert result.recipients == ("sales@client.example",)
    assert result.evidence["detector"] == "list server"


def test_what_a_list_server_says_besides_refusals_and_what_a_list_relays_are_no_bounce() -> None:
    held = _list_notice("sales-owner@client.example", "Your message to Sales awaits moderator approval",
                        "Your mail to 'Sales' is being held until the list moderator can review it.", List_Id="<sales.client.example>")
    assert classify(held).kind is not Kind.BOUNCE
    relayed = _list_notice("Ben Lee <ben.lee@client.example>", "[sales] Re: Our proposal",
                           "The board rejected the old offer; you are not a member of our vendor list yet. Send the new one?",
                           List_Id="<sales.client.example>", X_MLServer="fml")
    assert classify(relayed).kind is Kind.REPLY
