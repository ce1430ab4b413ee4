"""The people, as the demo plays them: leads who read what reaches their address and answer as
people do (hours or days later, in their working day; a reply, an out-of-office, a bounce from
their mail system, a request to be removed, a meeting acceptance, or nothing), and owners who
answer the replies from their own mail client and record outcomes in the CRM."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr

from imapclient import IMAPClient
from sqlalchemy import select

from outreach import crm
from outreach.db.models import Lead
from outreach.demo.cast import (
    Behaviour,
    Card,
    Persona,
    Played,
    Received,
    weekday,
    working_time,
)
from outreach.demo.emails import answer, bounce_report, out_of_office, owners_answer
from outreach.demo.localmail import CATCH_ALL, LocalMail
from outreach.sequences.calendar import zone
from outreach.service import App


@dataclass(order=True)
class _Act:
    """Something a person does at a moment: mail that arrives, or a line an owner records in the CRM."""

    at: dt.datetime
    order: int
    do: Callable[[], object] = field(compare=False)


class People:
    """The leads, and the owners answering them, as the demo plays them. Leads see only mail: what
    reaches their address; what they write back reaches the owner's INBOX."""

    def __init__(self, app: App, mail: LocalMail, password: str, cast: dict[str, Persona], seed: int) -> None:
        self.app, self.mail, self.password = app, mail, password  # the owners' password, for their mail client
        cards = _cards(app)
        self.leads = {email: Played(persona, cards[email], random.Random(f"{seed}:{email}")) for email, persona in cast.items()}
        self.mailboxes = {box.address for box in app.settings.workspace.mailboxes}
        self.pending: list[_Act] = []
        self._read = 0
        self._order = itertools.count()  # acts due at the same moment happen in the order they were planned

    def next_arrival(self) -> dt.datetime | None:
        return min(self.pending).at if self.pending else None

    def deliver_due(self, now: dt.datetime) -> None:
        due = sorted(act for act in self.pending if act.at <= now)
        self.pending = [act for act in self.pending if act.at > now]
        for act in due:
            act.do()

    def read_mail(self, now: dt.datetime) -> None:
        """New mail in the catch-all INBOX: each lead reads what reached them and reacts (or not)."""
        inbox = self.mail.messages(CATCH_ALL)
        for raw in inbox[self._read :]:
            recipient, mail = _parse_received(raw, now)
            lead = self.leads.get(recipient)
            if lead is not None:
                lead.received.append(mail)
                self._react(lead, mail, now)
        self._read = len(inbox)

    def _react(self, lead: Played, mail: Received, now: dt.datetime) -> None:
        """Machines answer within a minute or two (the mail system's bounce, the out-of-office);
        people later, once."""
        if lead.answered or mail.sender not in self.mailboxes:
            return
        behaviour = lead.persona.behaviour
        soon = now + dt.timedelta(seconds=lead.rng.uniform(20, 120))
        if behaviour is Behaviour.BOUNCE:
            self._mail(soon, mail.sender, bounce_report(lead, mail, soon))
            lead.answered = True
        elif behaviour is Behaviour.OUT_OF_OFFICE and lead.back_on is None:
            lead.back_on = weekday(lead.card.tz, now + dt.timedelta(days=lead.rng.randint(8, 11)))
            self._mail(soon, mail.sender, out_of_office(lead, mail, soon))
        elif _answers(lead, now):
            self._answer(lead, mail, now)

    def _answer(self, lead: Played, mail: Received, now: dt.datetime) -> None:
        """The lead writes back in their working day; a person's reply gets the owner's answer a little
        later in the owner's, and an outcome the owner records a day or two on."""
        at = working_time(now + dt.timedelta(hours=lead.rng.uniform(*lead.persona.delay_hours)), lead.card.tz, lead.rng)
        reply = answer(lead, mail, at)
        self._mail(at, mail.sender, reply)
        lead.answered = True
        if lead.persona.behaviour is Behaviour.OPT_OUT:
            return
        box = self.app.mailbox_config(mail.sender)
        owner_zone = zone(box.timezone) if box else lead.card.tz
        answered = working_time(at + dt.timedelta(hours=lead.rng.uniform(0.5, 3.5)), owner_zone, lead.rng)
        self._mail(answered, lead.card.email, owners_answer(lead, mail, reply, answered), filed_by=mail.sender)
        later = lead.persona.records
        if later is not None:
            recorded = working_time(answered + dt.timedelta(days=lead.rng.uniform(*later.after_days)), owner_zone, lead.rng)
            self._schedule(recorded, lambda: crm.mark(self.app, lead.card.email, later.outcome, later.note))

    def _mail(self, at: dt.datetime, to: str, raw: bytes, *, filed_by: str | None = None) -> None:
        """Mail that reaches `to`'s INBOX at `at`; sent by one of our owners (`filed_by`), it is also filed in their Sent folder."""

        def arrive() -> None:
            self.mail.deliver(raw, [to])
            if filed_by is not None:
                self._file_in_sent(filed_by, raw, at)

        self._schedule(at, arrive)

    def _schedule(self, at: dt.datetime, do: Callable[[], object]) -> None:
        self.pending.append(_Act(at, next(self._order), do))

    def _file_in_sent(self, mailbox: str, raw: bytes, at: dt.datetime) -> None:
        """The owner's mail client files what it sent in Sent (IMAP APPEND), dated when it was sent."""
        client = IMAPClient(self.mail.host, port=self.mail.imap_port, ssl=False, timeout=10)
        try:
            client.login(mailbox, self.password)
            client.append("Sent", raw, flags=[b"\\Seen"], msg_time=at)
        finally:
            client.logout()


def _answers(lead: Played, now: dt.datetime) -> bool:
    """Is the email just read the one the lead answers: the n-th, or the first after their leave?"""
    persona = lead.persona
    if persona.behaviour is Behaviour.OUT_OF_OFFICE:
        return lead.back_on is not None and now.astimezone(lead.card.tz).date() >= lead.back_on
    return persona.behaviour in (Behaviour.REPLY, Behaviour.OPT_OUT, Behaviour.MEETING) and len(lead.received) == persona.after_email


def _cards(app: App) -> dict[str, Card]:
    """Who each lead is and who owns them: what the person the demo plays knows of themselves."""
    cards = {}
    with app.sessions() as session:
        for lead in session.scalars(select(Lead)):
            name = lead.display_name
            owner_first = lead.owner.name.split()[0] if lead.owner else "there"
            cards[lead.email] = Card(lead.email, name, lead.company, zone(lead.timezone or app.settings.workspace.timezone), owner_first)
    return cards


def _parse_received(raw: bytes, now: dt.datetime) -> tuple[str, Received]:
    """The recipient (LocalMail's X-Original-To) and what they see of one email."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    name, sender = parseaddr(str(msg["From"]))
    body = msg.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n", 1)[1].decode("utf-8", "replace").replace("\r\n", "\n")
    received = Received(
        at=now, sender=sender.lower(), sender_name=name, subject=str(msg["Subject"] or ""), message_id=str(msg["Message-ID"] or ""),
        references=tuple(str(msg["References"] or "").split()), text=text, headers=headers,
    )
    return str(msg["X-Original-To"]).lower(), received
