"""Leads from CSV exports: column mapping, validation, and an all-or-nothing upsert."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.db.models import Lead, Person
from outreach.errors import LeadImportError, Location, Problem
from outreach.sequences.calendar import country_holidays, zone
from outreach.sequences.engine import CrmStatus

STANDARD = ("email", "first_name", "last_name", "company", "title", "phone", "timezone", "country", "owner")

# Header names seen in CRM exports (HubSpot, Salesforce, Pipedrive, Zoho, LinkedIn, Apollo),
# compared after lower-casing and dropping everything but letters and digits.
ALIASES: dict[str, str] = {
    "email": "email", "emailaddress": "email", "email1": "email", "workemail": "email",
    "personemail": "email", "primaryemail": "email", "contactemail": "email", "mail": "email",
    "firstname": "first_name", "first": "first_name", "givenname": "first_name", "personfirstname": "first_name",
    "lastname": "last_name", "last": "last_name", "surname": "last_name", "familyname": "last_name",
    "personlastname": "last_name",
    "company": "company", "companyname": "company", "accountname": "company", "organization": "company",
    "organisation": "company", "organizationname": "company", "account": "company", "personorganization": "company",
    "title": "title", "jobtitle": "title", "position": "title", "role": "title", "designation": "title",
    "phone": "phone", "phonenumber": "phone", "mobile": "phone", "mobilephone": "phone", "workphone": "phone",
    "personphone": "phone", "mobilephonenumber": "phone",
    "timezone": "timezone", "tz": "timezone", "iana": "timezone", "contacttimezone": "timezone",
    "country": "country", "countrycode": "country", "mailingcountry": "country", "countryregion": "country",
    "owner": "owner", "leadowner": "owner", "contactowner": "owner",
    "owneremail": "owner", "assignedto": "owner", "accountowner": "owner",
}  # fmt: skip

# Country names in exports, to ISO codes (the calendar wants codes).
COUNTRY_NAMES = {
    "india": "IN", "united states": "US", "usa": "US", "united states of america": "US", "us": "US",
    "united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "germany": "DE",
    "deutschland": "DE", "australia": "AU", "singapore": "SG", "france": "FR", "canada": "CA",
    "netherlands": "NL", "spain": "ES", "italy": "IT", "japan": "JP", "ireland": "IE",
    "united arab emirates": "AE", "uae": "AE", "brazil": "BR", "mexico": "MX", "sweden": "SE",
}  # fmt: skip

_KEY = re.compile(r"[^a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_key(name: str) -> str:
    return _KEY.sub("", name.strip().lower())


def custom_name(name: str) -> str:
    """'Annual Revenue ($)' -> 'annual_revenue'"""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_") or "field"


def normalise_address(address: str) -> str:
    """The form leads are matched by: validated, domain in IDNA-normal form, all lower-case."""
    return validate_email(address.strip(), check_deliverability=False).normalized.lower()


@dataclass(frozen=True)
class LeadRow:
    line: int
    email: str
    values: dict[str, str]
    custom: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


def resolve_columns(header: list[str], overrides: Mapping[str, str], path: Path) -> dict[int, str]:
    """Column index -> field name ('email', ... or 'custom:<name>')."""
    problems: list[Problem] = []
    by_key = {header_key(h): i for i, h in enumerate(header)}
    columns: dict[int, str] = {}
    for source, target in overrides.items():
        if target not in STANDARD:
            problems.append(Problem(Location(path, 1), f"--map {source}={target}: {target!r} is not a lead field; use one of {', '.join(STANDARD)}"))
            continue
        index = by_key.get(header_key(source))
        if index is None:
            problems.append(Problem(Location(path, 1), f"--map {source}={target}: no column {source!r} in the header ({', '.join(header)})"))
            continue
        columns[index] = target
    taken = set(columns.values())
    for index, name in enumerate(header):
        if index in columns:
            continue
        target = ALIASES.get(header_key(name))
        if target and target not in taken:
            columns[index] = target
            taken.add(target)
        elif name.strip():
            columns[index] = f"custom:{custom_name(name)}"
    if "email" not in taken and not problems:
        problems.append(
            Problem(
                Location(path, 1),
                f"no email column found in the header ({', '.join(header)}); name it 'Email' or map it with --map 'Your Column=email'",
            )
        )
    if problems:
        raise LeadImportError(problems, summary="nothing was imported")
    return columns


def parse_csv(
    path: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    owners: Mapping[str, str] | None = None,
    default_owner: str | None = None,
) -> list[LeadRow]:
    """Read and validate every row; all problems at once, with their line numbers."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise LeadImportError(Problem(Location(path), "no such file")) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise LeadImportError(Problem(Location(path), "the file is neither UTF-8 nor Windows-1252 text; export it as UTF-8 CSV")) from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise LeadImportError(Problem(Location(path, 1), "the file is empty; the first line must be a header")) from exc
    except csv.Error as exc:
        raise LeadImportError(Problem(Location(path, 1), f"not a readable CSV file: {exc}")) from exc
    columns = resolve_columns(header, overrides or {}, path)
    owner_lookup = {k.lower(): v for k, v in (owners or {}).items()}
    rows: list[LeadRow] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                problems.append(Problem(Location(path, line), f"{len(cells)} values but the header has {len(header)} columns; quote values that contain '{dialect.delimiter}'"))
                continue
            values: dict[str, str] = {}
            custom: dict[str, str] = {}
            row_problems: list[str] = []
            for index, cell in enumerate(cells):
                target = columns.get(index)
                value = cell.strip()
                if target is None or not value:
                    continue
                if _CONTROL.search(value):
                    row_problems.append(f"column {header[index]!r} holds control characters; remove them")
                    continue
                if target.startswith("custom:"):
                    custom[target[7:]] = value
                else:
                    values[target] = value
            email = values.get("email", "")
            if not email:
                row_problems.append("no email address; every lead needs one")
            else:
                try:
                    email = normalise_address(email)
                except EmailNotValidError as exc:
                    row_problems.append(f"email {values['email']!r} is not a valid address: {exc}")
            if "timezone" in values:
                try:
                    zone(values["timezone"])
                except ValueError as exc:
                    row_problems.append(str(exc))
            if "country" in values:
                code = COUNTRY_NAMES.get(values["country"].lower(), values["country"].upper())
                try:
                    country_holidays(code)
                    values["country"] = code
                except ValueError:
                    row_problems.append(f"country {values['country']!r} is not known; use an ISO code such as 'IN', 'US' or 'DE'")
            owner = values.get("owner") or default_owner
            if owner:
                resolved = owner_lookup.get(owner.lower())
                if resolved is None:
                    row_problems.append(f"owner {owner!r} is not in the team in outreach.yaml; add them or fix the name")
                else:
                    values["owner"] = resolved
            for key in ("first_name", "last_name", "company", "title"):
                if len(values.get(key, "")) > 200:
                    row_problems.append(f"{key} is longer than 200 characters")
            if email and not row_problems:
                if email in first_line:
                    row_problems.append(f"{email} is already on line {first_line[email]}; keep one row per lead")
                else:
                    first_line[email] = line
            if row_problems:
                problems.extend(Problem(Location(path, line), p) for p in row_problems)
            else:
                values["email"] = email
                rows.append(LeadRow(line=line, email=email, values=values, custom=custom))
    except csv.Error as exc:
        problems.append(Problem(Location(path, reader.line_num), f"not a readable CSV line: {exc}"))
    if problems:
        raise LeadImportError(problems, summary=f"{len(problems)} problem(s) in {path}; nothing was imported")
    return rows


def owner_lookup(session: Session) -> dict[str, str]:
    """Owner names and addresses as they may appear in a CSV, to the person's address."""
    lookup: dict[str, str] = {}
    for person in session.scalars(select(Person)):
        lookup[person.email] = person.email
        lookup[person.name.lower()] = person.email
    return lookup


def upsert(
    session: Session,
    rows: Iterable[LeadRow],
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
    batch: int = 500,
) -> ImportResult:
    """Insert new leads, update changed ones (fields present in the file win), in the caller's transaction."""
    people = {p.email: p.id for p in session.scalars(select(Person))}
    created = updated = unchanged = 0
    pending = list(rows)
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        existing = {lead.email: lead for lead in session.scalars(select(Lead).where(Lead.email.in_([r.email for r in chunk])))}
        for row in chunk:
            lead = existing.get(row.email)
            owner_id = people.get(row.values["owner"]) if "owner" in row.values else None
            if lead is None:
                lead = Lead(email=row.email, fields=dict(row.custom), created_at=now, updated_at=now, owner_id=owner_id, status=CrmStatus.NEW.value)
                for key, value in row.values.items():
                    if key not in ("email", "owner"):
                        setattr(lead, key, value)
                session.add(lead)
                created += 1
            else:
                changed = False
                for key, value in row.values.items():
                    if key in ("email", "owner"):
                        continue
                    if getattr(lead, key) != value:
                        setattr(lead, key, value)
                        changed = True
                if owner_id is not None and lead.owner_id != owner_id:
                    lead.owner_id = owner_id
                    changed = True
                merged = {**(lead.fields or {}), **row.custom}
                if merged != (lead.fields or {}):
                    lead.fields = merged
                    changed = True
                if changed:
                    lead.updated_at = now
                    updated += 1
                else:
                    unchanged += 1
            if progress:
                progress(1)
        session.flush()
    return ImportResult(created=created, updated=updated, unchanged=unchanged)
