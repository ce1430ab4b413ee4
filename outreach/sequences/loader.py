"""Reading sequence files, and `lint`: the schema, cross-references, and every template rendered."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from outreach.errors import InputError, Location, Problem, SequenceError
from outreach.mail.templates import TemplateSet
from outreach.sequences.schema import STORED, Sequence, out_of_bounds, vocabulary
from outreach.yamlsrc import Document, load_file, problem_at, schema_problems


@dataclass(frozen=True)
class LoadedSequence:
    definition: Sequence
    document: Document
    digest: str

    @property
    def name(self) -> str:
        return self.definition.name

    def locate(self, *loc: str | int) -> Location:
        return self.document.locate(loc)


def digest(definition: Sequence) -> str:
    canonical = json.dumps(definition.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_definition(data: Mapping[str, Any]) -> Sequence:
    """A definition stored by an earlier version: read as stored, without rules added since."""
    return Sequence.model_validate(data, context={STORED: True})


def load_sequence_file(path: Path) -> LoadedSequence:
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise SequenceError(Problem(Location(path, 1, 1), "a sequence file must be a mapping with at least 'name' and 'steps'"))
    try:
        definition = Sequence.model_validate(doc.data)
    except ValidationError as exc:
        raise SequenceError(schema_problems(doc, exc, vocabulary())) from exc
    beyond = out_of_bounds(definition)
    if beyond:
        raise SequenceError([problem_at(doc, loc, message) for loc, message in beyond])
    return LoadedSequence(definition=definition, document=doc, digest=digest(definition))


def sequence_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []


def load_all(directory: Path, files: list[Path] | None = None) -> tuple[dict[str, LoadedSequence], list[Problem]]:
    """Every sequence that loads, and the problems of those that don't."""
    found: dict[str, LoadedSequence] = {}
    problems: list[Problem] = []
    paths = files if files is not None else sequence_files(directory)
    if not paths:
        problems.append(Problem(Location(directory), "no sequence files (*.yaml) here"))
    for path in paths:
        try:
            loaded = load_sequence_file(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if loaded.name in found:
            other = found[loaded.name].document.path
            problems.append(Problem(loaded.locate("name"), f"sequence name {loaded.name!r} is already used by {other}; names must be unique"))
            continue
        found[loaded.name] = loaded
    return found, problems


SAMPLE_OWNER = {
    "name": "Priya Sharma", "first_name": "Priya", "email": "priya@example.com",
    "title": "Business Development Executive", "phone": "+91 80 4000 0000", "signature": "APPNEURAL",
}  # fmt: skip
SAMPLE_FULL_LEAD = {
    "email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe", "full_name": "Jane Doe",
    "company": "Example Corp", "title": "Head of Operations", "phone": "+1 555 0100",
    "timezone": "America/New_York", "country": "US",
}  # fmt: skip
SAMPLE_BARE_LEAD = {"email": "someone@example.org"}


def sample_contexts(owner: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    owner = owner or SAMPLE_OWNER
    mailbox = {"address": owner.get("email", ""), "name": owner.get("name", "")}
    return [
        ("a lead with every standard field", {"lead": SAMPLE_FULL_LEAD, "owner": owner, "mailbox": mailbox}),
        ("a lead with only an email address", {"lead": SAMPLE_BARE_LEAD, "owner": owner, "mailbox": mailbox}),
    ]


def check_rendering(
    loaded: LoadedSequence,
    templates: TemplateSet,
    contexts: list[tuple[str, dict[str, Any]]],
) -> list[Problem]:
    """Render every email and task note of a sequence for each sample context."""
    problems: list[Problem] = []
    seq = loaded.definition
    seen: set[str] = set()
    for loc, name in seq.templates():
        template_problems = templates.check(name)
        if template_problems:
            problems.extend(Problem(loaded.locate(*loc), f"template {name!r}: {p.message} ({p.location})") for p in template_problems)
            continue
        if name in seen:
            continue
        seen.add(name)
        for label, base in contexts:
            context = {**base, "sequence": {"name": seq.name, "description": seq.description}, "step": {"id": str(loc[1])}}
            try:
                templates.render(name, context)
            except InputError as exc:
                problems.extend(Problem(p.location, f"{p.message} (rendering for {label})") for p in exc.problems)
    for index, step in enumerate(seq.steps):
        if step.task is None:
            continue
        where = loaded.locate("steps", index, "task", "note")
        for label, base in contexts:
            context = {**base, "sequence": {"name": seq.name, "description": seq.description}, "step": {"id": step.id}}
            try:
                templates.render_string(step.task.note, context, where)
                if step.task.title:
                    templates.render_string(step.task.title, context, loaded.locate("steps", index, "task", "title"))
            except InputError as exc:
                problems.extend(Problem(p.location, f"{p.message} (rendering for {label})") for p in exc.problems)
    return problems


def lint(
    sequences_dir: Path,
    templates: TemplateSet,
    *,
    files: list[Path] | None = None,
    mailboxes: set[str] | None = None,
    contexts: list[tuple[str, dict[str, Any]]] | None = None,
) -> tuple[dict[str, LoadedSequence], list[Problem]]:
    """Everything that can be checked before a single email is sent."""
    found, problems = load_all(sequences_dir, files)
    known = set(found)
    if files is not None:  # references may point at sequences outside the files asked about
        known |= {load_name for load_name in _names_in(sequences_dir)}
    for loaded in found.values():
        seq = loaded.definition
        if seq.dormant and seq.dormant.then and seq.dormant.then not in known:
            problems.append(Problem(loaded.locate("dormant", "then"), f"no sequence named {seq.dormant.then!r}; known: {', '.join(sorted(known))}"))
        if mailboxes is not None:
            for index, address in enumerate(seq.pools):
                if address != "owner" and address.lower() not in mailboxes:
                    loc = ("mailbox",) if isinstance(seq.mailbox, str) else ("mailbox", index)
                    problems.append(Problem(loaded.locate(*loc), f"mailbox {address!r} is not configured in outreach.yaml"))
        problems.extend(check_rendering(loaded, templates, contexts or sample_contexts()))
    return found, problems


def _names_in(directory: Path) -> set[str]:
    names = set()
    for path in sequence_files(directory):
        try:
            names.add(load_sequence_file(path).name)
        except InputError:
            continue
    return names
