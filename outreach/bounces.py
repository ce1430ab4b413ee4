"""Soft bounces: a mailbox that cannot take mail now (full, suspended, given up on after retries).
The third one for a lead suppresses its address. They are learnt in two places, and count alike:
a bounce report read from the inbox (an inbound row, by the poller) and a refusal at send time
(the line delivery writes on the lead's record, naming the message refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.db.models import Event, InboundMail
from outreach.mail.bounce_reasons import Effect

LIMIT = 3  # soft bounces to one address before it is suppressed


def counts_as_soft(evidence: dict[str, Any]) -> bool:
    """Whether a recorded bounce counts towards suppression as soft: as it was acted on; bounces
    recorded before reasons were read count by their status class."""
    if "effect" in evidence:
        return bool(evidence["effect"] == Effect.SOFT.value)
    return not evidence.get("hard")


def reported(session: Session, lead_id: int, *, before: int | None = None) -> int:
    """The lead's soft bounces read from reports (before the inbound row `before`, if given)."""
    query = select(InboundMail.evidence).where(InboundMail.lead_id == lead_id, InboundMail.kind == "bounce")
    if before is not None:
        query = query.where(InboundMail.id < before)
    return sum(1 for evidence in session.scalars(query) if counts_as_soft(evidence or {}))


def refused_at_send(session: Session, lead_ids: Iterable[int]) -> dict[int, int]:
    """Each lead's soft refusals at send time, from the record (a lead's bounce lines are few)."""
    found: dict[int, int] = {}
    ids = set(lead_ids)
    if not ids:
        return found
    for lead_id, data in session.execute(select(Event.lead_id, Event.data).where(Event.lead_id.in_(ids), Event.kind == "bounce")):
        if lead_id is not None and _at_send(data or {}) and data.get("effect") == Effect.SOFT.value:
            found[lead_id] = found.get(lead_id, 0) + 1
    return found


def _at_send(data: dict[str, Any]) -> bool:
    """A bounce line written at send time names the message refused; one from a report, the inbound row."""
    return "message" in data and "inbound" not in data


def so_far(session: Session, lead_id: int) -> int:
    """All the lead's soft bounces recorded so far, from reports and at send time."""
    return reported(session, lead_id) + refused_at_send(session, (lead_id,)).get(lead_id, 0)
