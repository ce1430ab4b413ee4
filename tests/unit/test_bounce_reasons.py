"""A bounce's reason, what it does by default and as a sequence says, and the engine's hold on a refusal."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from outreach.errors import SequenceError
from outreach.mail import vocabulary
from outreach.mail.bounce_reasons import (
    FILTERING_GATEWAYS,
    RULES,
    Effect,
    Reason,
    effect_of,
    from_gateway,
    parse,
    reason_of,
    refusal_reason,
    wording_reason,
)
from outreach.mail.inbound import Kind, classify
from outreach.sequences import engine as eng
from outreach.sequences.calendar import BusinessCalendar, Window
from outreach.sequences.loader import load_sequence_file
from outreach.sequences.schema import Sequence

UTC = dt.UTC
AT = dt.datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
STEPS: dict[str, Any] = {
    "name": "bd",
    "window": {"days": "mon-sun", "hours": "00:00-24:00"},
    "steps": [{"id": "intro", "template": "intro"}, {"id": "nudge", "after": "2 days", "template": "nudge"}],
}


def test_the_table_has_one_row_per_reason_and_well_formed_codes() -> None:
    assert sorted(rule.reason for rule in RULES) == sorted(Reason)
    codes = [code for rule in RULES for code in rule.statuses]
    assert all(re.fullmatch(r"(x|[245])\.\d{1,3}\.\d{1,3}", code) for code in codes), codes
    assert len(codes) == len(set(codes)), "a status code names one reason"
    replies = [reply for rule in RULES for reply in rule.replies]
    assert len(replies) == len(set(replies)), "a reply code names one reason"


@pytest.mark.parametrize(
    ("reasons", "effect"),
    [
        ((Reason.USER_UNKNOWN, Reason.HOST_UNKNOWN, Reason.HAS_MOVED, Reason.NOT_ACCEPT), Effect.SUPPRESS),
        ((Reason.MAILBOX_FULL, Reason.SUSPEND, Reason.EXPIRED, Reason.NETWORK_ERROR, Reason.SYSTEM_ERROR, Reason.UNDEFINED), Effect.SOFT),
        ((Reason.BLOCKED, Reason.SPAM_DETECTED, Reason.POLICY_VIOLATION, Reason.SECURITY_ERROR, Reason.AUTH_FAILURE, Reason.NO_RELAYING,
          Reason.REJECTED, Reason.FILTERED, Reason.MESG_TOO_BIG), Effect.TASK),
    ],
)
def test_default_effects(reasons: tuple[Reason, ...], effect: Effect) -> None:
    assert {effect_of(reason, permanent=True) for reason in reasons} == {effect}


def test_a_domain_that_takes_no_mail_only_for_now_counts_as_soft() -> None:
    assert effect_of(Reason.NOT_ACCEPT, permanent=False) is Effect.SOFT


@pytest.mark.parametrize(
    ("status", "diagnostic", "words", "expected"),
    [
        ("5.1.1", "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", "", Reason.USER_UNKNOWN),
        ("5.1.1", "552 5.1.1 Mailbox full", "", Reason.MAILBOX_FULL),  # the words say more than the code
        ("5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "", Reason.BLOCKED),
        ("5.7.1", "550 5.7.1 Message rejected as spam", "", Reason.SPAM_DETECTED),
        ("5.2.2", "", "", Reason.MAILBOX_FULL),  # the code alone
        ("5.1.8", "553 5.1.8 No such domain ours.example", "", Reason.REJECTED),  # a code about our sender outweighs the words
        ("5.0.0", "", "SMTP error from remote mail server after initial connection:\n550 Rejected", Reason.BLOCKED),
        ("5.0.0", "", "SMTP error from remote mail server after MAIL FROM:<me@ours.example>:\n550 Rejected", Reason.REJECTED),
        ("5.7.1", "550-5.7.1 Messages with multiple 550-5.7.1 addresses in From: header are not accepted", "", Reason.NOT_COMPLIANT_RFC),
        (None, "", "This is a permanent error. The following address(es) failed:\n  a@b.example\n    retry timeout exceeded", Reason.EXPIRED),
        (None, "", "Technical details of permanent failure:\nThe recipient server did not accept our requests to connect. [mx: timed out]", Reason.EXPIRED),
        ("5.4.7", "", "<a@b.example>... Cannot send message for 4 days", Reason.EXPIRED),
        (None, "", "Your message was refused", Reason.UNDEFINED),
    ],
)
def test_the_reason_is_read_from_the_reply_then_the_code_then_the_words(status: str | None, diagnostic: str, words: str, expected: Reason) -> None:
    assert reason_of(status, diagnostic, words) is expected


def test_a_user_unknown_answered_to_the_text_is_a_filter_unless_a_code_confirms_it() -> None:
    transcript = "... while talking to mx.b.example.:\n>>> DATA\n<<< 550 Unknown user a@b.example\n554 5.0.0 Service unavailable\n"
    assert reason_of("5.0.0", "550 Unknown user a@b.example", transcript) is Reason.FILTERED
    assert reason_of("5.1.1", "550 5.1.1 Unknown user a@b.example", transcript.replace("550 ", "550 5.1.1 ")) is Reason.USER_UNKNOWN
    at_rcpt = "... while talking to mx.b.example.:\n>>> RCPT To:<a@b.example>\n<<< 550 Unknown user a@b.example\n"
    assert reason_of("5.0.0", "550 Unknown user a@b.example", at_rcpt) is Reason.USER_UNKNOWN


def test_a_user_unknown_under_a_mailbox_or_security_status_is_a_filter_unless_it_answered_rcpt() -> None:
    """x.2.1 says the mailbox exists and x.7.1 that delivery was not authorised: neither is a missing address."""
    assert reason_of("5.2.1", "550 5.2.1 <a@b.example>... User Unknown", "") is Reason.FILTERED
    assert reason_of("5.7.1", "550 5.7.1 550 User Unknown: a@b.example", "") is Reason.FILTERED
    in_reply = "<a@b.example>: host mx.b.example said: 550 5.2.1 <a@b.example>... User Unknown (in reply to RCPT TO command)"
    assert reason_of("5.2.1", in_reply, in_reply) is Reason.USER_UNKNOWN
    exim = "SMTP error from remote server after RCPT command:\nhost: mx.b.example\n5.2.1 <a@b.example>... User Unknown"
    assert reason_of("5.2.1", "5.2.1 <a@b.example>... User Unknown", exim) is Reason.USER_UNKNOWN


def test_a_filtering_gateways_user_unknown_is_its_filter_unless_a_status_says_the_address_is_bad() -> None:
    report = "<a@b.example>   (Unknown user a@b.example)"
    assert reason_of("5.0.0", "550 Unknown user a@b.example", report, gateway=True) is Reason.FILTERED
    assert reason_of("5.1.1", "550 5.1.1 Unknown user a@b.example", report, gateway=True) is Reason.USER_UNKNOWN
    assert reason_of("5.0.0", "550 Unknown user a@b.example", report) is Reason.USER_UNKNOWN


@pytest.mark.parametrize(
    ("headers", "gateway"),
    [
        ({"X-NAI-Header": ["Modified by McAfee Email Gateway"]}, True),
        ({"X-Mailer": ["m-FILTER"]}, True),
        ({"X-Mailer": ["SurfControl E-mail Filter"]}, True),
        ({"X-AHMailID": ["00000000"]}, True),
        ({"Received": ["from mx.b.example by relay.b.example (MAILFOUNDRY) id 1"]}, True),
        ({"From": ['"Mail Delivery System" <MAILER-DAEMON@0001.mxlogic.net>']}, True),
        ({"X-Mailer": ["Postfix"], "From": ["MAILER-DAEMON@mx.b.example"]}, False),
    ],
)
def test_a_filtering_gateway_is_known_by_a_header_it_adds(headers: dict[str, list[str]], gateway: bool) -> None:
    assert from_gateway(headers.get) is gateway


def test_a_gateways_report_is_read_as_the_gateways_and_its_marks_are_read_with_the_body() -> None:
    report = (
        "From: Mailer-Daemon <postmaster@gw.b.example>\r\nTo: me@ours.example\r\nSubject: Delivery Status\r\n"
        "X-NAI-Header: Modified by McAfee Email Gateway\r\nContent-Type: text/plain\r\n\r\n"
        "Your message could not be delivered:\r\n<lead@b.example>   (Unknown user lead@b.example)\r\n"
    )
    found = classify(report.encode())
    assert (found.kind, found.cause) == (Kind.BOUNCE, "filtered")
    assert classify(report.replace("X-NAI-Header: Modified by McAfee Email Gateway\r\n", "").encode()).cause == "userunknown"
    assert {name for name, _ in FILTERING_GATEWAYS} <= set(vocabulary.GATEWAY_MARKS) | set(vocabulary.FETCHED)


def test_a_refusal_of_our_sender_address_is_rejected_whatever_it_says_does_not_exist() -> None:
    words = "SMTP error from remote mail server after MAIL FROM:<me@ours.example> SIZE=1022:\n553 5.1.0 ours.example does not exist"
    assert reason_of("5.1.0", "553 5.1.0 ours.example does not exist", words) is Reason.REJECTED
    after_data = words.replace("after MAIL FROM:<me@ours.example> SIZE=1022", "after end of data")
    assert reason_of(None, "553 b.example does not exist", after_data) is Reason.HOST_UNKNOWN


def test_a_bare_not_authorised_given_to_mail_from_is_about_our_sender_but_a_size_refusal_stays_one() -> None:
    postfix = "<a@b.example>: host mx.b.example[192.0.2.1] said: 550\n    5.7.1 Access denied (in reply to MAIL FROM command)"
    assert reason_of("5.7.1", "550 5.7.1 Access denied", postfix) is Reason.REJECTED
    qmail = "<a@b.example>:\nConnected to 192.0.2.1 but sender was rejected.\nRemote host said: 550 5.7.1 <me@ours.example>... Access denied"
    assert reason_of("5.7.1", "Remote host said: 550 5.7.1 <me@ours.example>... Access denied", qmail) is Reason.REJECTED
    size = ">>> MAIL From:<me@ours.example> SIZE=16600348\n<<< 552 5.2.3 Message size exceeds fixed maximum message size (10485760)"
    assert reason_of("5.2.3", "552 5.2.3 Message size exceeds fixed maximum message size (10485760)", size) is Reason.EXCEED_LIMIT


@pytest.mark.parametrize(
    "transcript",
    [
        ">>> DATA\n<<< 550 5.7.1 <a@b.example>: Recipient address rejected: User unknown\n550 5.1.1 <a@b.example>... User unknown\n<<< 554 5.5.1 Error: no valid recipients",
        ">>> DATA\n<<< 550 5.0.0 <a@b.example>... User unknown\n550 5.1.1 <a@b.example>... User unknown\n<<< 503 5.0.0 Need RCPT (recipient)",
    ],
)
def test_a_pipelined_refusal_of_rcpt_seen_after_data_is_about_the_address(transcript: str) -> None:
    assert reason_of("5.0.0", transcript.splitlines()[1][4:], transcript) is Reason.USER_UNKNOWN


def test_yahoos_unknown_account_after_data_is_about_the_address() -> None:
    reply = "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0] - mta1061.mail.ne1.yahoo.com"
    assert reason_of("5.0.0", reply, f"... while talking to mta6.am0.yahoodns.net.:\n>>> DATA\n<<< {reply}\n554 5.0.0 Service unavailable") is Reason.USER_UNKNOWN


def test_a_size_refusal_given_to_rcpt_is_the_recipients_own_limit() -> None:
    assert reason_of("5.1.1", "550 RCPT TO:<a@b.example> max message size exceeded", "") is Reason.EXCEED_LIMIT
    assert reason_of("5.3.4", "552 5.3.4 Message too big for system", "") is Reason.MESG_TOO_BIG


def test_the_first_line_of_a_diagnostic_speaks_for_the_first_recipient() -> None:
    two = "a@b.example: 550 5.1.1 <a@b.example>: Recipient address rejected: User unknown\nc@b.example: 552 5.2.2 <c@b.example>: Mailbox full"
    assert reason_of("5.0.0", two, "") is Reason.USER_UNKNOWN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("User some.name (a@b.example) not listed in Domino Directory", Reason.USER_UNKNOWN),  # 'not listed' is no block list
        ("User  not listed in public Name & Address Book", Reason.USER_UNKNOWN),
        ("The recipient name is not recognized", Reason.USER_UNKNOWN),
        ("Invalid final delivery userid: a@b.example", Reason.USER_UNKNOWN),
        ("DNS lookup failure: host mx.b.example not found", Reason.HOST_UNKNOWN),
        ("The account or domain may not exist, they may be blacklisted, or missing the proper dns entries.", Reason.HOST_UNKNOWN),  # a guess is no block
        ("Original-recipient: rfc822;a@b.example\nDiagnostic-code: smtp; 550 5.7.1 550 User Unknown", Reason.USER_UNKNOWN),  # a DSN's address type is no RFC
        ("550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 : User unknown", Reason.FILTERED),  # no address: a domain filter
        ("550-REJECTED - Blacklisted URL in message. (example.com) in [black].", Reason.SPAM_DETECTED),  # our content, not our server
        ("501 <me@ours.example>... no access from mail server [192.0.2.55] which is an open relay.", Reason.BLOCKED),
        ("<a@b.example>... Deferred: Name server: b.example.: host name lookup failure", Reason.NETWORK_ERROR),
        ("554 5.7.1 Your message failed several antispam checks (SCORING). Please be sure your mailserver is configured correctly (spf , HELO, PTR)",
         Reason.SPAM_DETECTED),  # a PTR in a list of advice is not the reason
        ("550-REJECTED - Server at [b.example] rejected message - 550 550 192.0.2.68 is not allowed to send mail from ours.example", Reason.BLOCKED),
        ("550 <a@web.de> Benutzer hat zuviele Mails auf dem Server. / User has too many messages on the server.", Reason.MAILBOX_FULL),
    ],
)
def test_wording(text: str, expected: Reason) -> None:
    assert wording_reason(text) is expected


def test_a_group_that_refuses_our_post_is_a_refusal_of_our_sender() -> None:
    assert reason_of(None, "", "We're writing to let you know that the group you tried to contact may not exist.", ("googlegroups.com",)) is Reason.REJECTED


def test_a_stored_reason_reads_back_and_an_unknown_one_is_undefined() -> None:
    assert parse("blocked") is Reason.BLOCKED
    assert parse("gone-since") is Reason.UNDEFINED
    assert parse(None) is Reason.UNDEFINED


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.from_regex(r"[245]\.\d{1,3}\.\d{1,3}", fullmatch=True)), st.text(max_size=400), st.text(max_size=400))
def test_any_text_has_a_reason(status: str | None, diagnostic: str, words: str) -> None:
    assert isinstance(reason_of(status, diagnostic, words), Reason)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_a_null_sender_notice_is_never_an_answer_when_it_says_the_address_is_dead(text: str) -> None:
    """Whatever else it says (that names no other reason), with Auto-Submitted and References to our message."""
    assume(wording_reason(text) is None and "@" not in text)
    raw = (
        "From: <>\r\nReturn-Path: <>\r\nTo: me@ours.example\r\nSubject: Re: Our proposal\r\nAuto-Submitted: auto-replied\r\n"
        "References: <1@ours.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\nThe address lead@client.example does not exist.\r\n"
    ).encode("utf-8", "surrogateescape")
    found = classify(raw)
    assert found.kind is Kind.BOUNCE and found.recipients == ("lead@client.example",) and found.cause == "userunknown"


# -- the sequence's say, and the engine -------------------------------------------------------------


def test_a_sequence_may_choose_the_effect_per_reason() -> None:
    seq = Sequence.model_validate({**STEPS, "on_bounce_reason": {"mailboxfull": "suppress", "blocked": "soft"}})
    assert seq.bounce_effect(Reason.MAILBOX_FULL, permanent=True) is Effect.SUPPRESS
    assert seq.bounce_effect(Reason.BLOCKED, permanent=True) is Effect.SOFT
    assert seq.bounce_effect(Reason.USER_UNKNOWN, permanent=True) is Effect.SUPPRESS  # the rest as by default
    assert seq.bounce_effect(Reason.SPAM_DETECTED, permanent=True) is Effect.TASK


def test_an_unknown_reason_in_a_sequence_is_a_clear_error_naming_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bd.yaml"
    path.write_text("name: bd\non_bounce_reason:\n  mailbox-full: suppress\nsteps:\n  - id: intro\n    template: intro\n")
    with pytest.raises(SequenceError) as raised:
        load_sequence_file(path)
    message = str(raised.value)
    assert f"{path}:3" in message and "mailboxfull" in message, message


def _calendar() -> BusinessCalendar:
    return BusinessCalendar(ZoneInfo("UTC"), Window.parse("mon-sun", "00:00-24:00"))


def test_a_refusal_holds_the_sequence_until_the_owner_closes_the_task() -> None:
    seq = Sequence.model_validate(STEPS)
    sent = eng.decide(eng.State.start(AT, seed=1), seq, [], AT, _calendar())
    out = eng.apply_event(sent.state, seq, eng.EmailDone(at=AT, step_key="intro"), _calendar())[0]
    held, actions = eng.apply_event(out, seq, eng.Refused(at=AT, task_key="bounce:7"), _calendar())
    assert (held.phase, held.waiting_for, actions) == (eng.Phase.WAITING, "bounce:7", [])
    later = AT + dt.timedelta(days=5)
    assert eng.decide(held, seq, [], later, _calendar()).actions == (), "no step goes out while the owner has the task"
    going = eng.decide(held, seq, [eng.TaskFinished(at=later, step_key="bounce:7")], later, _calendar())
    assert going.state.phase is eng.Phase.ACTIVE and going.next_action_at == later + dt.timedelta(days=2), "the next step's wait counts from then"


def test_a_refusal_while_paused_holds_after_the_pause_and_changes_nothing_after_the_end() -> None:
    seq = Sequence.model_validate(STEPS)
    paused = eng.apply_event(eng.State.start(AT, seed=1), seq, eng.PauseRequested(at=AT), _calendar())[0]
    held = eng.apply_event(paused, seq, eng.Refused(at=AT, task_key="bounce:8"), _calendar())[0]
    assert (held.phase, held.resume_to, held.waiting_for) == (eng.Phase.PAUSED, eng.Phase.WAITING, "bounce:8")
    stopped = eng.apply_event(eng.State.start(AT, seed=1), seq, eng.Unsubscribed(at=AT), _calendar())[0]
    assert eng.apply_event(stopped, seq, eng.Refused(at=AT, task_key="bounce:9"), _calendar()) == (stopped, [])


@pytest.mark.parametrize(
    ("code", "reply", "reason"),
    [
        (550, "5.1.1 <x@acme.example>: Recipient address rejected: User unknown", Reason.USER_UNKNOWN),
        (554, "5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org", Reason.BLOCKED),
        (552, "5.2.2 <x@acme.example>: Mailbox full", Reason.MAILBOX_FULL),
        (550, "5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users", Reason.AUTH_FAILURE),
    ],
)
def test_a_refusal_at_send_time_is_read_like_a_reports_diagnostic(code: int, reply: str, reason: Reason) -> None:
    assert refusal_reason(code, reply, "x@acme.example") is reason
