"""Why a delivery failed: the reason of a bounce, and what a sequence does about it by default. Pure: no I/O.

The reasons follow the taxonomy of sisimai, the most complete open bounce classifier; it has no
Python port, so the rules are ours, in the one table below: per reason, the enhanced status codes
(RFC 3463, and the codes big providers add) and SMTP reply codes that mean it, and the wording
servers use for it. The first digit of a status says little: spam-filter blocks, policy rejections,
full mailboxes and suspended accounts come as 5.x.x just as an unknown user does.

A reason is read from the server's own reply first (a Diagnostic-Code, or the reply a report
quotes), then from the status code, then from the rest of the report's words, and last from the
reply code. Wording is tried in the table's order, so the more specific rules come first.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass


class Reason(enum.StrEnum):
    USER_UNKNOWN = "userunknown"  # no such mailbox
    HOST_UNKNOWN = "hostunknown"  # no such domain
    HAS_MOVED = "hasmoved"  # the person left; no forwarding
    NOT_ACCEPT = "notaccept"  # the domain takes no mail (null MX)
    MAILBOX_FULL = "mailboxfull"
    SUSPEND = "suspend"  # the account is disabled or suspended, for now
    EXCEED_LIMIT = "exceedlimit"  # larger than the recipient's own limit
    MESG_TOO_BIG = "mesgtoobig"  # larger than the server takes
    SPAM_DETECTED = "spamdetected"  # our message was taken for spam
    VIRUS_DETECTED = "virusdetected"
    BLOCKED = "blocked"  # our sending server or IP address is refused (block lists)
    BAD_REPUTATION = "badreputation"  # our sending IP or domain has a poor reputation
    REQUIRE_PTR = "requireptr"  # our sending server has no valid reverse DNS
    AUTH_FAILURE = "authfailure"  # SPF, DKIM or DMARC failed for our domain
    POLICY_VIOLATION = "policyviolation"  # refused by the receiving site's policy
    REJECTED = "rejected"  # our sender address was refused
    FILTERED = "filtered"  # the recipient's (or their domain's) filter refused our message
    NO_RELAYING = "norelaying"
    SECURITY_ERROR = "securityerror"  # authentication or encryption the server requires
    FAILED_STARTTLS = "failedstarttls"
    CONTENT_ERROR = "contenterror"
    NOT_COMPLIANT_RFC = "notcompliantrfc"
    SYNTAX_ERROR = "syntaxerror"
    SPEEDING = "speeding"  # we sent too much too fast
    TOO_MANY_CONN = "toomanyconn"
    EXPIRED = "expired"  # the sending server gave up after retrying
    NETWORK_ERROR = "networkerror"
    SYSTEM_ERROR = "systemerror"
    SYSTEM_FULL = "systemfull"
    MAILER_ERROR = "mailererror"
    UNDEFINED = "undefined"  # nothing says why


class Effect(enum.StrEnum):
    """What a bounce does to the lead, as a sequence may choose per reason (`on_bounce_reason`)."""

    SUPPRESS = "suppress"  # the address is dead: stop and never mail it again
    SOFT = "soft"  # the mailbox cannot take mail now: the third such bounce in a row suppresses
    TASK = "task"  # a refusal about us (our server, domain, content): the lead stays; the sequence waits on a task for the owner


@dataclass(frozen=True)
class Rule:
    reason: Reason
    effect: Effect  # the default
    statuses: tuple[str, ...] = ()  # enhanced status codes, as 'x.1.1' (either class) or '5.7.1'
    replies: tuple[str, ...] = ()  # SMTP reply codes that mean it when nothing else says more
    wording: str = ""  # a regular expression, matched case-insensitively: specific phrases
    vague: str = ""  # phrases that mean it only when no specific one, status or stage says more
    hosts: str = ""  # failed recipients' domains whose servers mean it by a refusal that names nothing


_S, _T, _X = Effect.SUPPRESS, Effect.SOFT, Effect.TASK

# The order of the rows is the order wording is tried in: specific before general.
RULES: tuple[Rule, ...] = (
    Rule(Reason.NOT_COMPLIANT_RFC, _X,
         wording=r"rfc ?(5322|2822|822|5321)(?!;)|not (rfc )?compliant|multiple (addresses in from|subject|from|date|to|message-id)\b|duplicate header"),
    Rule(Reason.TOO_MANY_CONN, _X, ("x.5.3",),
         wording=r"too many (connections|recipients(?! this)|concurrent)|connection (rate )?limit|frequency limited|too many smtp sessions"),
    Rule(Reason.SPEEDING, _X, ("x.7.28",),
         wording=r"receiving mail at a rate|too many recipients this hour|has sent to too many|sending (rate|quota)|throttl|(?<!connection )rate limit"
         r"|too many (messages|emails)(?! (on|in) the (server|mail ?box))"),
    Rule(Reason.AUTH_FAILURE, _X, ("x.7.20", "x.7.21", "x.7.22", "x.7.23", "x.7.24", "x.7.26", "x.7.29", "5.7.509"),
         wording=r"\bdmarc\b|\bspf (check|record|fail|polic|hard)|(per|pass|fails?|failed|with) (it'?s |its |the )?spf\b|\bdkim\b(?! ?-?signature')|sender policy framework"
         r"|authentication (checks?|information)\b.{0,40}\b(fail|missing|lack)|fails? to pass (spf|dkim|dmarc|authentication)|sender is unauthenticated"
         r"|does not have authentication information|unauthenticated email"),
    # A PTR named in parentheses is advice in a list of things to check ("(spf, HELO, PTR)"), not the reason.
    Rule(Reason.REQUIRE_PTR, _X, ("x.7.25",),
         wording=r"reverse dns|\brdns\b|\bptr\b(?![^()]*\))|reverse (lookup|mapping)|ip name lookup failed|mismatches client ip|unverifi?y?able sending ip"
         r"|cannot find your (reverse )?hostname|no reverse"),
    Rule(Reason.BAD_REPUTATION, _X, ("4.7.650", "5.7.650"),
         wording=r"reputation|\[TSS0\d\]|unexpected volume or user complaints"),
    Rule(Reason.VIRUS_DETECTED, _X,
         wording=r"\bvirus|malware|\binfected\b|\bworm\b|trojan"),
    Rule(Reason.BLOCKED, _X, ("x.7.1", "5.7.606", "5.7.607", "5.7.608", "4.7.0"), ("571",),
         wording=r"blocked (using|by|for abuse|- see)|\bblock ?list|(?<!may be )black ?list(ed)?\b(?! (url|link))|\bdnsbl\b|\brbl\b|spamhaus|spamcop|\bsorbs\b|abuseat"
         r"|barracudacentral|(?<!not )listed (in|on|at|by)\b|banned sending ip|refused to talk to me|client host( \[[^\]]*\])? (rejected|blocked)"
         r"|use the smtp server of your isp|on our block list|unwanted messages have been sent|invalid ip for sending|not accepting connections"
         r"|may not be mail exchanger|which is an open relay|no access from mail server|\b\d{1,3}(\.\d{1,3}){3} is not allowed to send|\bblocked\b.{0,20}\bip\b|service refuse|source bloquee"),
    Rule(Reason.SPAM_DETECTED, _X,
         wording=r"\bspam(?!haus|cop)|anti-?spam (checks?|filter|scor)|\bUBE\b|\bUCE\b|junk mail|blacklisted (url|link)|\buribl\b|\bsurbl\b|message content rejected|content rejected"
         r"|mail rejete|bulk mail|unsolicited"),
    Rule(Reason.NO_RELAYING, _X,
         wording=r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed|disallowed)|not (permitted|allowed|authori[sz]ed|configured) to relay"
         r"|unable to relay|we do not relay|no relaying|insecure mail relay|email address is not verified|\brcpthosts\b|use me [^\n]{0,80}as a relay"),
    Rule(Reason.SECURITY_ERROR, _X, ("x.7.3", "x.7.4", "x.7.5", "x.7.6", "x.7.7", "x.7.8", "x.7.9", "x.7.10", "x.7.11", "x.7.14", "x.7.15",
                                     "x.7.16", "x.7.17", "x.7.18", "x.7.19", "x.7.30"), ("530", "535", "538"),
         wording=r"authentication required|authrequired|smtp authentication|unauthenticated senders|must (issue a )?starttls first|encryption required"
         r"|tls required|delivery not authorized"),
    Rule(Reason.FAILED_STARTTLS, _X,
         wording=r"starttls|tls (negotiation|handshake)|(ssl|tls) (error|failure|failed)|(does not|doesn't) support (tls|ssl|encryption)"),
    Rule(Reason.CONTENT_ERROR, _X, ("x.6.0", "x.6.1", "x.6.2", "x.6.3", "x.6.4", "x.6.5", "x.6.6", "x.6.7", "x.6.8", "x.6.9", "x.6.10"),
         wording=r"8-bit data|headers too large|media error|content error|illegal (attachment|character)|attachment (type )?not allowed|invalid mime"),
    Rule(Reason.POLICY_VIOLATION, _X,
         wording=r"polic(y|ies)(?! of reject)|protocol violation|header error|content presents a potential|not allowed - |network not allowed"),
    Rule(Reason.REJECTED, _X, ("x.1.7", "x.1.8"),
         wording=r"sender (address |domain )?(rejected|denied|refused|not allowed|blocked|invalid|unknown)|domain of sender address|sender (domain|address) (does not|doesn't) exist"
         r"|unroutable sender|sender verif\w* fail|rejected sender|not a member of this (mailing )?list|may not have permission to post|send mail as"
         r"|purported responsible address|from address rejected|invalid sender|provide a valid from",
         vague=r"\baccess denied\b|^\s*5\d\d[ -](\d\.\d\.\d+ )?rejected\b",
         hosts=r"(^|\.)googlegroups\.com$"),
    Rule(Reason.FILTERED, _X,
         wording=r"domain filter|recipient preferences|message filtered|(^|->)\s*550\s*:\s*:?\s*user unknown"),
    Rule(Reason.EXCEED_LIMIT, _X, ("x.2.3",),
         wording=r"message length exceeds|exceeds? (the )?(size )?limit set by (the )?recipient|recipsizelimit|too large for this recipient|exceeds fixed maximum"),
    Rule(Reason.MESG_TOO_BIG, _X, ("x.3.4",), ("534",),
         wording=r"message (is |was )?too (big|large)|message size (exceeds|exceeded|too)|(?<!mailbox )size limit|line limit exceeded|exceeds (the )?maximum (message )?size|too big for"),
    Rule(Reason.SYSTEM_FULL, _T, ("x.3.1", "x.4.5"),
         wording=r"insufficient (disk|system) (space|storage)|system (storage|disk) (is )?full|disk full|out of disk space"),
    Rule(Reason.MAILBOX_FULL, _T, ("x.2.2",), ("452", "552"),
         wording=r"mail ?box (is )?(full|over)|over ?quota|quota (exceeded|full|exceed)|exceed(s|ed)? (the |his |her |their |your )?(storage|quota|mailbox|disk)"
         r"|insufficient (storage|space|disk)|mailbox size limit|mail ?folder( is)? full|disk quota|not enough (storage|space)|storage (limit|full)|user (is )?over"
         r"|mailbox (has )?exceed|no space left|too many (messages|mails) (on|in) the (server|mail ?box)|zu ?viele mails"),
    Rule(Reason.SUSPEND, _T, ("x.2.1", "x.7.13"),
         wording=r"(account|mail ?box|user|address|recipient)\b[\w ]{0,24}\b(is |has been |was )?(disabled|suspended|inactive|deactivated|frozen|locked|discontinued|de-?activated)"
         r"|(disabled|suspended|inactive|deactivated) (account|mail ?box|recipient|user|address)|compte du destinataire est bloque|account is blocked|temporar(il)?y locked"),
    Rule(Reason.HAS_MOVED, _S, ("x.1.6",), ("551",),
         wording=r"has moved|no longer (on (this )?server|at this address|with us|valid)|recipient no longer|not our (user|customer)|user not local|address (has )?changed"),
    Rule(Reason.NOT_ACCEPT, _S, ("x.1.10", "x.3.2", "x.7.27"), ("521", "556"),
         wording=r"(does not|doesn't) (accept|receive) (e-?mail|mail)|not accepting (network )?(messages|mail)|null mx|no mx record|couldn'?t find (a|any) mail exchanger"
         r"|accepts no mail|no smtp service"),
    Rule(Reason.EXPIRED, _T, ("x.4.7", "x.4.1", "x.4.2"),
         wording=r"expired|retry (timeout|time) (exceeded|reached)|could not (be )?deliver(ed)? (for|in|within) (the last )?\d|cannot send (the )?message for \d"
         r"|delivery failed \d+ attempts|unable to deliver in \d|not able to establish an smtp connection|wasn't able to establish|did not accept our requests to connect"
         r"|host not reachable|unable to connect|failing for a long time|aborted after|timed? ?out",
         vague=r"in the queue too long|gave up|giving up(?! on)"),
    Rule(Reason.NETWORK_ERROR, _T, ("x.4.6",),
         wording=r"dns error|name server reply|dns query failed|(host )?name lookup failure|too many hops|hop count|routing loop|mail loop|loops back to myself|lost connection"
         r"|connection (reset|refused)|network is unreachable|no route to host"),
    Rule(Reason.HOST_UNKNOWN, _S, ("x.1.2", "x.4.4"),
         wording=r"host unknown|unknown host|domain (name )?(not found|does not exist|doesn't exist|unknown|is invalid|is not reachable)|no such domain"
         r"|host (or domain name )?not found|unrout(e)?able (mail )?(domain|address)|non-?existent (host|domain)|(domain|host) (name )?(lookup )?failed"
         r"|hostname.{0,20}(not|does not) resolve|bad destination system|name or service not known|dns lookup fail|\bhost [\w.-]+ not found"
         r"|domain may not exist|(?<![\w@.-])([a-z0-9-]+\.)+[a-z]{2,} does not exist"),
    Rule(Reason.MAILER_ERROR, _T,
         wording=r"mailer error|\bx-unix;|procmail|program exited|command (died|failed)|pipe to|unknown mailer"),
    Rule(Reason.USER_UNKNOWN, _S, ("x.1.1", "x.1.3", "x.1.4", "x.1.0"),
         wording=r"user(name)? unknown|unknown (user|recipient|mailbox|local[- ]?part|address|account)|no such (user|mailbox|recipient|account|address|person|local user)"
         r"|(user|mailbox|recipient|account|address|addressee)( name)? (does not|doesn't|did not|not) exist|(user|recipient|mailbox|address|addressee) (not found|unknown)"
         r"|invalid (recipient|mailbox|address|user)|not a valid (user|mailbox|recipient|address)|recipient (address )?rejected: access denied|mailbox (is )?unavailable"
         r"|doesn't have an? .{1,60} account|account that you tried to reach does not exist|bad destination mailbox|no mail ?box (here|found|available)|not a known user"
         r"|\b(user|rcpt|recipient|address)\b[^\n]{0,60}\b(does not|doesn't) exist|bad_?recipient|not an active address"
         r"|unknown or illegal alias|addressee unknown|undeliverable address|not listed in|no such address|recipient not found|mail[- ]?box not found|no valid recipients"
         r"|(address|recipient|mailbox)( you sent to)? (is|was) (not valid|invalid)|not a valid (e-?mail )?address"
         r"|recipient name is not recognized|invalid (final delivery )?userid",
         vague=r"recipient (address )?rejected"),
    Rule(Reason.SYSTEM_ERROR, _T, ("x.3.0", "x.3.5", "x.4.3"), ("421", "451"),
         wording=r"internal (system |server )?error|system error|mail system problem|service (currently )?(unavailable|not available)|local error"
         r"|transaction failed|queue file write error|unable to contact ldap|could not load|duplicated message-id|configuration error|server error"),
    Rule(Reason.SYNTAX_ERROR, _X, ("x.5.0", "x.5.1", "x.5.2", "x.5.4", "x.5.5", "x.5.6"), ("500", "501", "502", "503", "504"),
         wording=r"syntax error|command (not |un)recognized|improper sequence of commands|bad sequence|parameter not implemented|malformed address|incorrectly constructed"),
    Rule(Reason.UNDEFINED, _T, wording=r"\bon hold\b"),
)

_BY_REASON = {rule.reason: rule for rule in RULES}
_WORDING = tuple((rule.reason, re.compile(rule.wording, re.IGNORECASE | re.MULTILINE)) for rule in RULES if rule.wording)
_VAGUE = tuple((rule.reason, re.compile(rule.vague, re.IGNORECASE | re.MULTILINE)) for rule in RULES if rule.vague)
_HOSTS = tuple((rule.reason, re.compile(rule.hosts, re.IGNORECASE)) for rule in RULES if rule.hosts)
_DECISIVE = frozenset({Reason.REJECTED})  # a status about our sender address outweighs words about the recipient
_CONTINUATION = re.compile(r"(?<=[ \t])[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3}[ \t])?")
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_REPLY = re.compile(r"(?<![\w.\-/])([45][0-5]\d)(?=[\s\-,;:]|$)(?![\-:.]\d)", re.MULTILINE)
# The SMTP command a refusal answered, from the transcript or the words around it: a "user unknown"
# without a status to confirm it that came only after the message's text was sent (DATA) is a
# filter's doing (Japanese carriers answer their domain filters' refusals this way), not a missing
# mailbox; one that answered RCPT is about the address.
_COMMAND = re.compile(r"^\s*>>> ?(\w+)", re.MULTILINE)
_DATA_AFTER = re.compile(r"^[^\n]*\n?[^\n]*in reply to (end of )?data|^[^\n]*\(data\)", re.IGNORECASE)
_DATA_BEFORE = re.compile(r"after (end of )?data\b|for text command", re.IGNORECASE)
# Under PIPELINING the replies to RCPT arrive after DATA was sent: a transcript's "user unknown" after
# ">>> DATA" that the next replies show as a recipient's ("no valid recipients", sendmail's own
# "5.1.1 ... User unknown" for it) answered RCPT.
_PIPELINED = re.compile(r"no valid recipients|^\s*5\d\d[ -]5\.1\.1 [^\n]*user unknown", re.IGNORECASE | re.MULTILINE)
# Wording only the mailbox's own store uses, never a filter, wherever it is said: Yahoo refuses an
# unknown recipient after DATA with it.
_STORE_SAYS = re.compile(r"this user doesn'?t have an? [\w.-]+ account", re.IGNORECASE)
_RCPT_AFTER = re.compile(r"^[^\n]*\n?[^\n]*(in reply to rcpt to|\[rcpt_to\]|\(rcpt\))", re.IGNORECASE)
_RCPT_BEFORE = re.compile(r"after rcpt\b|did not like our rcpt to|in reply to rcpt to", re.IGNORECASE)
# Statuses under which a "user unknown" is a filter's refusal, unless it answered RCPT: x.2.0 and
# x.2.1 say the mailbox exists (but takes nothing, or not this), x.7.x that delivery was not
# authorised; neither is a missing address.
_FILTER_STATUS = re.compile(r"^[45]\.(2\.[01]|7\.\d{1,3})$")

# Filtering gateways: products that stand in front of a domain's mail server and answer for it.
# Their "user unknown" is the verdict of their own rules (an address or domain filter), not word
# from the mailbox, unless a status code (x.1.1) says the address is bad. Each row: a header the
# gateway adds to its reports, and what its value holds.
FILTERING_GATEWAYS: tuple[tuple[str, str], ...] = (
    ("X-NAI-Header", r"McAfee"),  # McAfee Email Gateway
    ("X-Mailer", r"^m-FILTER|SurfControl"),  # m-FILTER (Digital Arts), SurfControl E-mail Filter
    ("X-SEF-Processed", r""),  # SurfControl
    ("X-AHMailID", r""),  # ActiveHunter
    ("X-MXL-Hash", r""),  # MXLogic (McAfee SaaS)
    ("X-MX-Bounce", r""),  # MXLogic
    ("Received", r"\(MAILFOUNDRY\)"),  # MailFoundry
    ("From", r"@([\w-]+\.)*mxlogic\.net\b"),  # MXLogic's reports, without its own headers
)
# Generic words that say nothing of the reason, but of the step the server refused us at.
_AT_CONNECT = re.compile(r"after (initial connection|ehlo|helo)|refused to talk to me|my name was rejected", re.IGNORECASE)
_AT_SENDER = re.compile(r"after mail from", re.IGNORECASE)
# A refusal of MAIL FROM is about our sender address, whatever it says of an address or domain that
# "does not exist" (the recipient is not named until RCPT), and so is a bare "not authorised" status
# (x.7.1) given to it. A refusal there for size or wording that names another cause keeps it.
_STAGE = re.compile(r"(?:after|in reply to) (mail from|rcpt|end of data|data|initial connection|ehlo|helo)\b|^\s*>>> ?(mail|rcpt|data|ehlo|helo)\b"
                    r"|but (sender) was rejected", re.IGNORECASE | re.MULTILINE)
_ABOUT_THE_ADDRESS = frozenset({Reason.USER_UNKNOWN, Reason.HOST_UNKNOWN, Reason.HAS_MOVED, Reason.FILTERED})
_NOT_AUTHORISED = frozenset({Reason.BLOCKED, Reason.SECURITY_ERROR})
# A size refusal given to RCPT, before the message's size is known to the server (but for a SIZE
# parameter on MAIL FROM, which it would have refused there), is the recipient's own limit.
_RCPT_SIZE = re.compile(r"^\s*\d{3}[ -]rcpt to:", re.IGNORECASE | re.MULTILINE)


def parse(value: str | None) -> Reason:
    """A stored reason read back; what is not one (or a reason dropped since) is UNDEFINED."""
    try:
        return Reason(value or Reason.UNDEFINED.value)
    except ValueError:
        return Reason.UNDEFINED


def effect_of(reason: Reason, *, permanent: bool) -> Effect:
    """The default effect of a bounce. A domain that says it takes no mail, but only for now (a
    temporary status), counts as a soft bounce: the third in a row suppresses."""
    effect = _BY_REASON[reason].effect
    if reason is Reason.NOT_ACCEPT and not permanent:
        return Effect.SOFT
    return effect


def wording_reason(text: str, *, vague: bool = False) -> Reason | None:
    """The reason the first matching rule gives a piece of a report's text, or None."""
    for reason, pattern in _VAGUE if vague else _WORDING:
        if pattern.search(text):
            return reason
    return None


def first_line_reason(text: str, *, vague: bool = False) -> Reason | None:
    """The reason of the first line of a report that gives one: a report says why near where it names
    the recipient, and what comes later (advice, a second recipient) says less."""
    for line in text.splitlines():
        found = wording_reason(line, vague=vague)
        if found is not None:
            return found
    return None


def status_reason(status: str | None) -> Reason | None:
    """The reason an enhanced status code names on its own, or None ('5.0.0' names none)."""
    found = _STATUS.match(status or "")
    if found is None:
        return None
    klass, subject, detail = found.groups()
    if klass == "2":
        return None
    for rule in RULES:
        for code in rule.statuses:
            first, rest = code.split(".", 1)
            if rest == f"{subject}.{detail}" and first in ("x", klass):
                return rule.reason
    return None


def reply_reason(text: str) -> Reason | None:
    """The reason the first SMTP reply code in the text names, if any."""
    found = _REPLY.search(text)
    if found is None:
        return None
    for rule in RULES:
        if found.group(1) in rule.replies:
            return rule.reason
    return None


def host_reason(domains: tuple[str, ...]) -> Reason | None:
    for reason, pattern in _HOSTS:
        if any(pattern.search(domain) for domain in domains):
            return reason
    return None


def from_gateway(headers: Callable[[str], list[str] | None]) -> bool:
    """Is a report from a filtering gateway? `headers`: a header's values by name (Message.get_all)."""
    return any(
        re.search(pattern, value, re.IGNORECASE)
        for name, pattern in FILTERING_GATEWAYS
        for value in headers(name) or ()
    )


def reason_of(status: str | None, diagnostic: str, words: str, domains: tuple[str, ...] = (), *, gateway: bool = False) -> Reason:
    """Why delivery failed. `diagnostic`: the receiving server's own reply (a Diagnostic-Code, or the
    reply a report quotes); `words`: the rest of the report's text, without the returned message;
    `domains`: the failed recipients' domains; `gateway`: the report is from a filtering gateway."""
    diagnostic, words = _unfolded(diagnostic), _unfolded(words)
    coded = status_reason(status)
    reason = (
        (coded if coded in _DECISIVE else None)
        or first_line_reason(diagnostic)
        or coded
        or first_line_reason(words)
        or wording_reason(words)
        or host_reason(domains)
        or _stage_reason(f"{diagnostic}\n{words}")
        or wording_reason(diagnostic, vague=True)
        or first_line_reason(words, vague=True)
        or reply_reason(f"{diagnostic}\n{words}")
        or Reason.UNDEFINED
    )
    if (reason in _ABOUT_THE_ADDRESS or (reason is coded and reason in _NOT_AUTHORISED)) and _first_stage(f"{words}\n{diagnostic}") in ("MAIL", "SENDER"):
        return Reason.REJECTED
    if reason is Reason.MESG_TOO_BIG and (_RCPT_SIZE.search(diagnostic) or _first_stage(f"{words}\n{diagnostic}") == "RCPT"):
        return Reason.EXCEED_LIMIT
    if reason is Reason.USER_UNKNOWN and coded is not Reason.USER_UNKNOWN:
        answered = _answered(diagnostic) or _answered(words)
        if answered == "DATA" or (answered != "RCPT" and (gateway or _FILTER_STATUS.match(status or ""))):
            return Reason.FILTERED
    return reason


_STATUS_IN_REPLY = re.compile(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.])")


def refusal_reason(code: int | None, reply: str, recipient: str) -> Reason:
    """Why a server refused a recipient while we were sending (its reply to RCPT or DATA): read as a
    report's Diagnostic-Code would be, with the enhanced status the reply carries."""
    status = _STATUS_IN_REPLY.search(reply)
    return reason_of(status.group(0) if status else None, f"{code or ''} {reply}".strip(), "", (recipient.rpartition("@")[2],))


def _unfolded(text: str) -> str:
    """A multi-line reply as one: '550-5.7.1 ... 550-5.7.1 ...' loses the codes repeated inside it."""
    return _CONTINUATION.sub("", text)


def _stage_reason(text: str) -> Reason | None:
    """A refusal that says nothing of why, but when: at the connection (our server), or at our sender address."""
    if _AT_CONNECT.search(text):
        return Reason.BLOCKED
    if _AT_SENDER.search(text):
        return Reason.REJECTED
    return None


def _first_stage(text: str) -> str | None:
    """The SMTP command the first refusal a report tells of answered, where it says: 'MAIL', 'RCPT', ..."""
    found = _STAGE.search(text)
    if found is None:
        return None
    return next(g for g in found.groups() if g).split()[0].upper()


def _answered(text: str) -> str | None:
    """The SMTP command ('RCPT' or 'DATA') the server's "user unknown" answered, where the text says."""
    pattern = next(p for r, p in _WORDING if r is Reason.USER_UNKNOWN)
    for found in pattern.finditer(text):
        before = text[max(0, found.start() - 400) : found.start()]
        after = text[found.end() : found.end() + 200]
        commands = _COMMAND.findall(before)
        if _STORE_SAYS.search(text[max(0, found.start() - 20) : found.end() + 60]):
            return "RCPT"
        if commands and commands[-1].upper() == "DATA" and _PIPELINED.search(text[found.end() : found.end() + 300]):
            return "RCPT"
        if commands and commands[-1].upper() in ("DATA", "RCPT"):
            return commands[-1].upper()
        if _DATA_AFTER.search(after) or _DATA_BEFORE.search(before[-200:]):
            return "DATA"
        if _RCPT_AFTER.search(after) or _RCPT_BEFORE.search(before[-200:]):
            return "RCPT"
    return None
