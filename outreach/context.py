"""Plain data for templates, built from database rows (templates never see ORM objects)."""

from __future__ import annotations

from typing import Any

from outreach.db.models import Lead, Mailbox, Person
from outreach.leads import STANDARD

LEAD_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "timezone", "country")


def lead_context(lead: Lead) -> dict[str, Any]:
    data: dict[str, Any] = {key: value for key, value in (lead.fields or {}).items() if key not in STANDARD}
    for key in LEAD_FIELDS:
        data[key] = getattr(lead, key) or ""
    full = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    data["full_name"] = full
    return data


def person_context(person: Person | None) -> dict[str, Any]:
    if person is None:
        return {}
    return {
        "name": person.name,
        "first_name": person.name.split()[0] if person.name else "",
        "email": person.email,
        "title": person.title,
        "phone": person.phone,
        "signature": person.signature,
    }


def mailbox_context(mailbox: Mailbox | None) -> dict[str, Any]:
    if mailbox is None:
        return {}
    return {"address": mailbox.address, "name": mailbox.display_name}
