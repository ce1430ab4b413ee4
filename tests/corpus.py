"""The corpus of real mail, as test cases with the classification each one should get.

The corpus is in tests/data/corpus (OUTREACH_TEST_CORPUS names another copy). Expectations come
from the corpus's own labels; where a label disagrees with the rules we classify by, or there is
none, the case says so in `note`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from outreach.mail.inbound import Kind

# Real mail from public projects (sisimai, reply-trimmer, talon), kept here with their licences.
CORPUS = Path(os.environ.get("OUTREACH_TEST_CORPUS") or Path(__file__).resolve().parent / "data" / "corpus")
SISIMAI = CORPUS / "sisimai"
TRIMMER = CORPUS / "reply-trimmer" / "test"
TALON = CORPUS / "talon" / "tests" / "fixtures" / "standard_replies"

# `hard` is scored against the label's class: bounce_hard means a permanent 5.x.x status, bounce_soft
# a transient 4.x.x one, which is what Classification.hard says. The /hard or /nothard at the end of
# each recipient's row is sisimai's narrower flag "this address does not exist" (user or host
# unknown): most bounce_hard rows say /nothard (mailbox full, blocked, policy), so it is not used.
_LABELS = {
    "bounce_hard": Kind.BOUNCE,
    "bounce_soft": Kind.BOUNCE,
    "bounce_unknown": Kind.BOUNCE,
    "complaint_arf": Kind.COMPLAINT,
    "dsn_success_not_bounce": Kind.DELIVERY_NOTICE,
    "auto_reply": Kind.AUTO_REPLY,
    "not_bounce": Kind.REPLY,  # two people's messages (one forwards a message as an attachment)
}

# Where sisimai's label and our rules part ways. Its labels say what sisimai reports; ours say what
# a follow-up sequence must do with the message.
_OVERRIDES: dict[str, tuple[Kind, bool | None, str]] = {
    "bsd/arf-26.eml": (Kind.UNSUBSCRIBE, None, "Apple Mail's unsubscribe button writing to our List-Unsubscribe mailto"),
    "not/rb-issue-368-bug.eml": (Kind.BOUNCE, None, "a postmaster's 'mailbox full, resend later' rejection notice"),
}
# sisimai counts delay warnings as (mostly soft) bounces; for a sequence they are no failure: the
# server is still trying. A report whose every Action is 'delayed', or whose subject or text says
# it is a delay warning, is expected as a delivery notice.
_DELAY = re.compile(
    rb"^Subject:.*(\(delay\)|delayed|still being retried|warning: could not send|notification: warning)"
    rb"|THIS IS A WARNING MESSAGE ONLY",
    re.IGNORECASE | re.MULTILINE,
)
_ACTION = re.compile(rb"^Action:\s*(\w+)", re.IGNORECASE | re.MULTILINE)


# sisimai has no expectation for these. All but two are plainly bounces (a delivery-status part
# with Action: failed, or a postmaster's 'could not be delivered' notice); their hard/soft is not
# scored, since no label says it.
_UNLABELLED: dict[str, tuple[Kind, str]] = {
    "bsd/rfc3834-06.eml": (Kind.AUTO_REPLY, "a Mimecast autoresponse with Auto-Submitted: auto-replied"),
    "bsd/lhost-x1-04.eml": (Kind.DELIVERY_NOTICE, "'Warning--Could not send mail for past 8.5 hours': still retrying"),
}


# Where sisimai's reason for a bounce is arguably wrong, the reason expected instead and why (whether
# to suppress follows from it). Kept short: a difference of judgement is scored as a difference.
_REASON_EXCEPTIONS: dict[str, tuple[str, str]] = {
    "bsd/lhost-sendmail-27.eml": ("userunknown", ("pipelined RCPT: the '503 Need RCPT' after DATA shows the recipient was refused; "
                                  "sisimai labels the same transcript userunknown in lhost-sendmail-46")),
    "bsd/lhost-sendmail-48.eml": ("userunknown", ("pipelined RCPT: the '554 no valid recipients' after DATA shows the recipient was "
                                  "refused; the same transcript is userunknown in lhost-sendmail-46")),
    "bsd/rfc3464-42.eml": ("userunknown", ("Gmail's 'The email account that you tried to reach does not exist' is its mailbox store's "
                           "word, which no filter uses")),
    "bsd/rhost-aol-06.eml": ("networkerror", ("a malformed name-server reply to the MX lookup is a DNS failure, not a domain that says it "
                             "takes no mail")),
}
_ADDRESS_DEAD = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "sisimai", "reply-trimmer" or "talon"
    path: Path
    expected: Kind
    hard: bool | None = None  # bounces whose label says hard (5.x.x) or soft (4.x.x)
    recipients: int | None = None  # how many recipients the label lists, for bounces
    reason: str | None = None  # bounces: sisimai's reason for the first recipient ('userunknown', 'blocked' ...)
    suppress: bool | None = None  # bounces: sisimai's flag that the address does not exist (user or host unknown, moved)
    new_text: str | None = None  # the expected text of a reply without history and signature
    note: str = ""

    def raw(self) -> bytes:
        """The message as it would arrive: corpus replies that are bare text get headers around them."""
        if self.source != "reply-trimmer":
            return self.path.read_bytes()
        msg = EmailMessage()
        msg["From"] = "Lead <lead@example.org>"
        msg["To"] = "owner@example.com"
        msg["Subject"] = "Re: Our proposal"
        msg["Message-ID"] = f"<{self.path.stem}@example.org>"
        msg["In-Reply-To"] = "<proposal@example.com>"
        msg.set_content(self.path.read_text(encoding="utf-8"))
        return msg.as_bytes()


def require() -> None:
    """A missing corpus fails the tests that read it: it ships with the repository."""
    if not CORPUS.is_dir():
        pytest.fail(f"the mail corpus is missing: expected it at {CORPUS} (a partial checkout?)")


def sisimai_cases() -> list[Case]:
    cases = []
    with (SISIMAI / "labels.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            cases.append(_sisimai_case(row["path"], row["label"], row["sisimai_rows(status/reply/reason/hard)"]))
    return cases


def _sisimai_case(name: str, label: str, rows: str) -> Case:
    path = SISIMAI / name
    if name in _OVERRIDES:
        kind, hard, note = _OVERRIDES[name]
        return Case(name, "sisimai", path, kind, hard=hard, note=note)
    if name in _UNLABELLED:
        kind, note = _UNLABELLED[name]
        return Case(name, "sisimai", path, kind, note=note)
    if label.startswith("bounce") and _delay_warning(path.read_bytes()):
        return Case(name, "sisimai", path, Kind.DELIVERY_NOTICE, note="delay warning (sisimai: bounce)")
    if label.startswith("UNLABELLED"):
        return Case(name, "sisimai", path, Kind.BOUNCE, note="unlabelled bounce")
    hard = {"bounce_hard": True, "bounce_soft": False}.get(label)
    recipients = len(rows.split(";")) if label.startswith("bounce") else None
    first = rows.split(";")[0].split("/")
    reason, suppress = (first[2], first[3] in ("hard", "true")) if label.startswith("bounce") and len(first) >= 4 else (None, None)
    note = ""
    if name in _REASON_EXCEPTIONS:
        reason, why = _REASON_EXCEPTIONS[name]
        suppress, note = reason in _ADDRESS_DEAD, f"sisimai: {first[2]}; {why}"
    return Case(name, "sisimai", path, _LABELS[label], hard=hard, recipients=recipients, reason=reason, suppress=suppress, note=note)


def _delay_warning(raw: bytes) -> bool:
    actions = {a.lower() for a in _ACTION.findall(raw)}
    return actions == {b"delayed"} or (not actions and _DELAY.search(raw) is not None)


def trimmer_cases() -> list[Case]:
    return [
        Case(f"reply-trimmer/{p.name}", "reply-trimmer", p, Kind.REPLY,
             new_text=(TRIMMER / "trimmed" / p.name).read_text(encoding="utf-8"))
        for p in sorted((TRIMMER / "emails").glob("*.txt"))
    ]


def talon_cases() -> list[Case]:
    """talon's standard replies: the answer is 'Hello'. Two *_reply_text files add the signature,
    which our new text leaves out on purpose, so they must start with it."""
    cases = []
    for path in sorted(TALON.glob("*.eml")):
        stated = TALON / f"{path.stem}_reply_text"
        note = stated.read_text(encoding="utf-8") if stated.exists() else ""
        cases.append(Case(f"talon/{path.name}", "talon", path, Kind.REPLY, new_text="Hello", note=note))
    return cases


def all_cases() -> list[Case]:
    return sisimai_cases() + trimmer_cases() + talon_cases()


# The second corpus: other projects' bounce test mails (tests/data/corpus2/<project>/labels.csv).
CORPUS2 = Path(os.environ.get("OUTREACH_TEST_CORPUS2") or Path(__file__).resolve().parent / "data" / "corpus2")
PROJECTS = ("flufl.bounce", "bounced", "bounceparser", "constructed")
# BounceParser's reasons are coarser than ours: each stands for these of ours.
BOUNCEPARSER_REASONS = {
    "user_unknown": frozenset({"userunknown", "hasmoved", "filtered", "suspend"}),  # its tests file disabled accounts here too
    "user_disabled": frozenset({"suspend"}),
    "over_quota": frozenset({"mailboxfull", "exceedlimit"}),
    "domain_error": frozenset({"hostunknown", "notaccept", "norelaying", "networkerror"}),
    "spam": frozenset({"spamdetected", "blocked", "filtered", "policyviolation", "badreputation", "contenterror"}),
    "message_too_large": frozenset({"mesgtoobig", "exceedlimit"}),
}
_ADDRESS_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})


@dataclass(frozen=True)
class Labelled:
    """A case of the second corpus. `kind` None: the project says only that it is not a bounce."""

    project: str
    name: str
    path: Path
    kind: Kind | None
    recipients: tuple[str, ...]
    permanent: bool | None  # the project's permanent (hard) against temporary
    status: str
    reasons: frozenset[str]  # the reasons of ours that agree with the project's expectation; empty: none stated
    note: str

    @property
    def suppress(self) -> bool | None:
        """Whether the address is dead, where the expected reason says (for constructed cases, exactly)."""
        if not self.reasons:
            return None
        dead = {r in _ADDRESS_REASONS for r in self.reasons}
        return dead.pop() if len(dead) == 1 else None


def corpus2_cases() -> list[Labelled]:
    cases = []
    for project in PROJECTS:
        with (CORPUS2 / project / "labels.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                kind = None if row["kind"] == "not_bounce" else Kind(row["kind"])
                source = row["source_reason"]
                reasons = BOUNCEPARSER_REASONS.get(source, frozenset()) if project == "bounceparser" else frozenset({source} if source else ())
                permanent = {"true": True, "false": False}.get(row["permanent"])
                recipients = tuple(a for a in row["recipients"].split(";") if a)
                cases.append(Labelled(project, f"{project}/{row['path']}", CORPUS2 / project / row["path"], kind, recipients, permanent, row["status"], reasons, row["note"]))
    return cases


def share(hits: int, total: int) -> float:
    """hits / total, 1.0 for nothing to count (a class with no cases is not a failing class)."""
    return hits / total if total else 1.0
