"""The application: what the CLI, the demo and (later) the workers call. I/O lives here, not in the engine."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.orm.attributes import flag_modified

from outreach.clock import Clock, SystemClock
from outreach.config import MailboxConfig, Settings
from outreach.context import lead_context, mailbox_context, person_context
from outreach.db.batch import insert_rows
from outreach.db.models import Enrollment, Event, Lead, Mailbox, Person, SequenceVersion, Suppression
from outreach.db.session import ensure_schema, make_engine, session_factory, transaction
from outreach.errors import ConfigError, Conflict, InputError, Location, NotFound, Problem, SequenceError, TemplateError
from outreach.mail.imap import MailStore
from outreach.mail.subjects import reply_subject
from outreach.mail.transport import Transport
from outreach.leads import ImportResult, normalise_address, owner_lookup, parse_csv, upsert
from outreach.mail.templates import Rendered, TemplateSet
from outreach.sequences import engine as eng
from outreach.sequences.calendar import BusinessCalendar, country_holidays, zone
from outreach.sequences.loader import LoadedSequence, from_definition, lint, sample_contexts
from outreach.sequences.schema import Sequence

ACTIVE_PHASES = tuple(p.value for p in eng.Phase if p not in eng.TERMINAL)


# ---- engine state <-> database ---------------------------------------------------------------


def state_to_json(state: eng.State) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else (value.value if isinstance(value, eng.Phase) else value)
    return out


_PHASES = ("phase", "resume_to")
_TIMES = ("anchor_at", "cycle_started_at", "paused_until", "paused_at")


def state_from_json(data: dict[str, Any]) -> eng.State:
    values: dict[str, Any] = {}
    for name, value in data.items():
        if value is not None and name in _PHASES:
            value = eng.Phase(value)
        elif value is not None and name in _TIMES:
            value = dt.datetime.fromisoformat(value)
        values[name] = value
    return eng.State(**values)


# ---- what is shown -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedItem:
    at: dt.datetime
    local: dt.datetime
    kind: str  # email | task | escalate | dormant | revisit | complete
    step: str
    detail: str
    thread: int | None
    subject: str
    mailbox: str


@dataclass(frozen=True)
class Preview:
    sender: str
    recipient: str
    subject: str
    thread: int
    planned_at: dt.datetime
    local: dt.datetime
    rendered: Rendered


@dataclass(frozen=True)
class EnrollResult:
    enrolled: list[str]
    skipped: list[tuple[str, str]]


class App:
    """One workspace, one database, one clock."""

    def __init__(self, settings: Settings, clock: Clock | None = None, *, migrate: bool | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.engine = make_engine(settings.database_url)
        try:
            ensure_schema(self.engine, auto=settings.database_url.startswith("sqlite") if migrate is None else migrate)
        except BaseException:
            self.engine.dispose()
            raise
        self.sessions = session_factory(self.engine)
        self.templates = TemplateSet(settings.templates_dir)
        self._sequences: dict[str, LoadedSequence] | None = None
        self._local = threading.local()
        self._connections: list[Any] = []
        self._definitions: dict[int, Sequence] = {}
        self._connections_lock = threading.Lock()
        self.transport_factory: Callable[[MailboxConfig], Transport] = functools.partial(_smtp_transport, deadline=settings.workspace.send_lease / 2)
        self.store_factory: Callable[[MailboxConfig], MailStore] = _imap_store

    def close(self) -> None:
        self.close_connections()
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- team ---------------------------------------------------------------------------------------

    def sync_team(self, session: Session) -> None:
        """Mirror the workspace's mailboxes and people into the database (secrets stay out)."""
        ws = self.settings.workspace
        boxes = {m.address: m for m in session.scalars(select(Mailbox))}
        for cfg in ws.mailboxes:
            box = boxes.get(cfg.address) or Mailbox(address=cfg.address)
            box.display_name, box.timezone, box.daily_cap = cfg.name, cfg.timezone, cfg.daily_cap
            session.add(box)
            boxes[cfg.address] = box
        session.flush()
        people = {p.email: p for p in session.scalars(select(Person))}
        for cfg in ws.team:
            person = people.get(cfg.email) or Person(email=cfg.email, name=cfg.name)
            person.name, person.title, person.phone, person.signature = cfg.name, cfg.title, cfg.phone, cfg.signature
            box = boxes.get(cfg.mailbox or cfg.email)
            person.mailbox_id = box.id if box else None
            session.add(person)
            people[cfg.email] = person
        session.flush()
        for cfg in ws.team:
            people[cfg.email].manager_id = people[cfg.manager].id if cfg.manager else None

    # -- sequences ----------------------------------------------------------------------------------

    def lint(self, files: list[Path] | None = None) -> tuple[dict[str, LoadedSequence], list[Problem]]:
        mailboxes = {m.address for m in self.settings.workspace.mailboxes}
        team = self.settings.workspace.team
        owner = None
        if team:
            p = team[0]
            owner = {"name": p.name, "first_name": p.name.split()[0], "email": p.email, "title": p.title, "phone": p.phone, "signature": p.signature}
        return lint(self.settings.sequences_dir, self.templates, files=files, mailboxes=mailboxes, contexts=sample_contexts(owner))

    def sequences(self) -> dict[str, LoadedSequence]:
        if self._sequences is None:
            found, problems = self.lint()
            if problems:
                raise SequenceError(problems, summary="the sequences have problems; fix them (see `outreach sequences lint`)")
            self._sequences = found
        return self._sequences

    def sync_sequences(self, session: Session) -> dict[str, SequenceVersion]:
        """Store a new version of every changed sequence and carry in-flight enrollments onto it."""
        now = self.clock.now()
        current: dict[str, SequenceVersion] = {}
        for name, loaded in self.sequences().items():
            latest = session.scalars(
                select(SequenceVersion).where(SequenceVersion.name == name).order_by(SequenceVersion.version.desc()).limit(1)
            ).first()
            if latest is not None and latest.digest == loaded.digest:
                current[name] = latest
                continue
            # A changed file, or one put back as it was before, becomes the newest version.
            version = SequenceVersion(
                name=name,
                version=(latest.version if latest else 0) + 1,
                digest=loaded.digest,
                definition=loaded.definition.model_dump(mode="json", by_alias=True),
                source_path=str(loaded.document.path),
                created_at=now,
            )
            session.add(version)
            session.flush()
            current[name] = version
            if latest is not None:
                self._migrate(session, latest, version, loaded.definition)
        return current

    def _migrate(self, session: Session, old: SequenceVersion, new: SequenceVersion, definition: Sequence) -> None:
        old_def = from_definition(old.definition)
        rows = session.scalars(select(Enrollment).where(Enrollment.sequence_name == new.name, Enrollment.phase.in_(ACTIVE_PHASES), Enrollment.sequence_id != new.id))
        for enrollment in rows:
            before = state_from_json(enrollment.state)
            after = eng.migrate(before, old_def, definition)
            enrollment.sequence_id = new.id
            self._store_state(session, enrollment, after, definition)
            session.add(Event(lead_id=enrollment.lead_id, enrollment_id=enrollment.id, at=self.clock.now(), kind="sequence-updated", key_points=f"{new.name} v{old.version} -> v{new.version}", status=after.crm_status.value, next_follow_up_at=enrollment.next_action_at, data={"from": old.version, "to": new.version}))

    # -- leads ----------------------------------------------------------------------------------------

    def import_leads(
        self,
        path: Path,
        *,
        overrides: dict[str, str] | None = None,
        default_owner: str | None = None,
        progress: Callable[[int], None] | None = None,
        on_parsed: Callable[[int], None] | None = None,
    ) -> ImportResult:
        with transaction(self.sessions) as session:
            self.sync_team(session)
            owners = owner_lookup(session)
            rows = parse_csv(path, overrides=overrides, owners=owners, default_owner=default_owner)
            if on_parsed:
                on_parsed(len(rows))
            result = upsert(session, rows, self.clock.now(), progress=progress)
            session.add(Event(at=self.clock.now(), kind="leads-imported", key_points=f"{path.name}: {result.created} new, {result.updated} updated", data={"file": str(path)}))
            return result

    def lead(self, session: Session, email: str) -> Lead:
        try:
            key = normalise_address(email)
        except Exception as exc:
            raise InputError(Problem(Location("--lead"), f"{email!r} is not an email address")) from exc
        lead = session.scalars(select(Lead).where(Lead.email == key)).first()
        if lead is None:
            raise NotFound(f"no lead {key}; import it first with `outreach leads import FILE.csv`")
        return lead

    # -- enrollments ----------------------------------------------------------------------------------

    def calendar_for(self, seq: Sequence, lead: Lead, mailbox: Mailbox | None) -> BusinessCalendar:
        if seq.timezone == "lead":
            name = lead.timezone or (mailbox.timezone if mailbox else "") or self.settings.workspace.timezone
        else:
            name = seq.timezone
        holidays = None
        if seq.holidays == "lead":
            if lead.country:
                holidays = country_holidays(lead.country)
        elif seq.holidays:
            holidays = country_holidays(seq.holidays)
        window = seq.window.build()
        # `is not None`: a holiday calendar is a dict that fills in a year the first time a day of it is looked up, so it is empty (false) until then
        return BusinessCalendar(tz=zone(name), window=window, holidays=holidays) if holidays is not None else BusinessCalendar(tz=zone(name), window=window)

    def mailbox_for(self, session: Session, seq: Sequence, lead: Lead, seed: int) -> Mailbox | None:
        pool = seq.pools
        if pool == ["owner"]:
            return lead.owner.mailbox if lead.owner else None
        # the few mailbox rows are read once per session, not once per enrollment
        mailboxes: dict[str, Mailbox] | None = session.info.get("mailboxes")
        if mailboxes is None:
            mailboxes = session.info["mailboxes"] = {m.address: m for m in session.scalars(select(Mailbox))}
        return mailboxes.get(pool[seed % len(pool)].lower())

    def enrollment_calendar(self, session: Session, enrollment: Enrollment, seq: Sequence) -> BusinessCalendar:
        """The calendar of one enrollment: its lead's zone (else its mailbox's), window and holidays."""
        return self.calendar_for(seq, enrollment.lead, self.mailbox_for(session, seq, enrollment.lead, enrollment.seed))

    def _store_state(self, session: Session, enrollment: Enrollment, state: eng.State, seq: Sequence) -> None:
        cal = self.enrollment_calendar(session, enrollment, seq)
        save_state(enrollment, state, eng.next_action_at(state, seq, cal), self.clock.now())

    def feed(self, session: Session, enrollment: Enrollment, event: eng.Event) -> tuple[eng.State, list[eng.Action]]:
        """Fold one event into an enrollment through the engine and store the outcome."""
        seq = self.definition(enrollment)
        before = state_from_json(enrollment.state)
        after, actions = eng.apply_event(before, seq, event, self.enrollment_calendar(session, enrollment, seq))
        if after != before:
            self._store_state(session, enrollment, after, seq)
        return after, actions

    def feed_lead(self, session: Session, lead: Lead, event: eng.Event, *, active_only: bool = False, running: list[Enrollment] | None = None) -> list[Enrollment]:
        """One event for every running enrollment of a lead: an answer in any thread ends (or pauses) them all.
        `running`: the lead's running enrollments, when the caller has read them already (with others')."""
        phases = (eng.Phase.ACTIVE.value, eng.Phase.WAITING.value) if active_only else ACTIVE_PHASES
        if running is None:
            running = running_enrollments(session, {lead.id})[lead.id]
        enrollments = [e for e in running if e.phase in phases]
        for enrollment in enrollments:
            self.feed(session, enrollment, event)
        return enrollments

    def context(self, session: Session, seq: Sequence, lead: Lead, mailbox: Mailbox | None, step_id: str) -> dict[str, Any]:
        return {
            "lead": lead_context(lead),
            "owner": person_context(lead.owner),
            "mailbox": mailbox_context(mailbox),
            "sequence": {"name": seq.name, "description": seq.description},
            "step": {"id": step_id},
        }

    def _check_lead(self, session: Session, loaded: LoadedSequence, lead: Lead) -> list[Problem]:
        seq = loaded.definition
        problems = []
        if seq.pools == ["owner"] and (lead.owner is None or lead.owner.mailbox is None):
            return [Problem(Location(lead.email), "has no owner with a mailbox; set the Owner column or use --owner, or name a mailbox in the sequence")]
        mailbox = self.mailbox_for(session, seq, lead, 0)
        for step in seq.steps:
            ctx = self.context(session, seq, lead, mailbox, step.id)
            try:
                if step.template:
                    self.templates.render(step.template, ctx)
                elif step.task:
                    index = seq.index(step.id)
                    self.templates.render_string(step.task.note, ctx, loaded.locate("steps", index or 0, "task", "note"))
            except TemplateError as exc:
                problems.extend(Problem(Location(lead.email), f"step {step.id!r}: {p}") for p in exc.problems)
        return problems

    def enroll(self, sequence: str, emails: Iterable[str] | None, *, all_leads: bool = False, seed: int | None = None) -> EnrollResult:
        loaded = self.sequences().get(sequence)
        if loaded is None:
            raise NotFound(f"no sequence {sequence!r}; known: {', '.join(sorted(self.sequences()))}")
        rng = random.Random(seed)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            self.sync_team(session)
            versions = self.sync_sequences(session)
            version = versions[sequence]
            if all_leads:
                leads = list(session.scalars(select(Lead).order_by(Lead.id)))
            else:
                leads = [self.lead(session, email) for email in (emails or [])]
            if not leads:
                raise InputError(Problem(Location("command line"), "no leads given; name them with --lead EMAIL or use --all"))
            suppressed = set(session.scalars(select(Suppression.email).where(Suppression.email.in_([lead.email for lead in leads]))))
            running = set(session.scalars(select(Enrollment.lead_id).where(Enrollment.sequence_name == sequence, Enrollment.phase.in_(ACTIVE_PHASES))))
            enrolled: list[str] = []
            skipped: list[tuple[str, str]] = []
            problems: list[Problem] = []
            todo = []
            for lead in leads:
                if lead.email in suppressed:
                    skipped.append((lead.email, "suppressed (bounced or unsubscribed)"))
                elif lead.id in running:
                    skipped.append((lead.email, f"already in {sequence}"))
                else:
                    found = self._check_lead(session, loaded, lead)
                    problems.extend(found)
                    if not found:
                        todo.append(lead)
            if problems:
                raise TemplateError(problems, summary="nothing was enrolled; these leads cannot be sent this sequence as it is")
            for lead in todo:
                self._create_enrollment(session, lead, version, loaded.definition, now, rng.getrandbits(62))
                enrolled.append(lead.email)
            return EnrollResult(enrolled=enrolled, skipped=skipped)

    def _create_enrollment(self, session: Session, lead: Lead, version: SequenceVersion, definition: Sequence, now: dt.datetime, seed: int) -> Enrollment:
        state = eng.State.start(now, seed)
        enrollment = Enrollment(lead=lead, lead_id=lead.id, sequence=version, sequence_id=version.id, sequence_name=version.name, phase=state.phase.value, state={}, seed=seed, enrolled_at=now, updated_at=now)
        self._store_state(session, enrollment, state, definition)
        session.add(enrollment)
        session.flush()
        record(session, enrollment, now, "enrolled", f"enrolled in {version.name} v{version.version}")
        return enrollment

    def start_enrollment(self, session: Session, lead: Lead, sequence: str, now: dt.datetime) -> Enrollment | str:
        """Enroll from inside the machine (a revisit) in the newest stored version; if it cannot, why not."""
        version = session.scalars(select(SequenceVersion).where(SequenceVersion.name == sequence).order_by(SequenceVersion.version.desc()).limit(1)).first()
        if version is None:
            return f"no sequence {sequence!r} is stored; run the scheduler with the sequences folder that has it"
        if session.scalar(select(Suppression.id).where(Suppression.email == lead.email)) is not None:
            return "the address is suppressed"
        running = session.scalar(select(Enrollment.id).where(Enrollment.lead_id == lead.id, Enrollment.sequence_name == sequence, Enrollment.phase.in_(ACTIVE_PHASES)))
        if running is not None:
            return f"already in {sequence}"
        seed = random.Random(f"{lead.id}:{sequence}:{now.isoformat()}").getrandbits(62)  # the same story on a replay
        return self._create_enrollment(session, lead, version, self.definition(version), now, seed)

    def sequences_location(self, name: str) -> Location:
        loaded = self._sequences.get(name) if self._sequences else None
        return Location(loaded.document.path if loaded else f"sequence {name}")

    # -- mail connections -------------------------------------------------------------------------

    def definition(self, of: SequenceVersion | Enrollment) -> Sequence:
        """The parsed definition of a stored version, or of an enrollment's version. Versions never
        change, so it is cached: an enrollment's version row is read only the first time."""
        version_id = of.sequence_id if isinstance(of, Enrollment) else of.id
        cached = self._definitions.get(version_id)
        if cached is None:
            version = of.sequence if isinstance(of, Enrollment) else of
            cached = self._definitions[version_id] = from_definition(version.definition)
        return cached

    def mailbox_zone(self, address: str) -> ZoneInfo:
        cfg = self.mailbox_config(address)
        return zone(cfg.timezone if cfg else self.settings.workspace.timezone)

    def mailbox_config(self, address: str) -> MailboxConfig | None:
        for cfg in self.settings.workspace.mailboxes:
            if cfg.address == address:
                return cfg
        return None

    def transport(self, address: str) -> Transport:
        """The sending connection for a mailbox, one per thread, kept open between messages."""
        cache = self._local.__dict__.setdefault("transports", {})
        if address not in cache:
            cfg = self.mailbox_config(address)
            if cfg is None:
                raise ConfigError(Problem(Location("outreach.yaml"), f"mailbox {address} is not configured"))
            cache[address] = self.transport_factory(cfg)
            with self._connections_lock:
                self._connections.append(cache[address])
        return cache[address]  # type: ignore[no-any-return]

    def store(self, address: str) -> MailStore | None:
        """The IMAP side of a mailbox (Sent folder, replies), one per thread; None when not configured."""
        cache = self._local.__dict__.setdefault("stores", {})
        if address not in cache:
            cfg = self.mailbox_config(address)
            cache[address] = self.store_factory(cfg) if cfg is not None and cfg.imap is not None else None
            if cache[address] is not None:
                with self._connections_lock:
                    self._connections.append(cache[address])
        return cache[address]  # type: ignore[no-any-return]

    def close_connections(self) -> None:
        """Close every mail connection any thread opened (call when the workers have stopped)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for conn in connections:
            try:
                conn.close()
            except Exception:  # closing is best effort; the process is going away
                logging.getLogger(__name__).debug("closing a mail connection failed", exc_info=True)

    def _enrollments(self, session: Session, email: str, sequence: str | None, active_only: bool = True) -> list[Enrollment]:
        lead = self.lead(session, email)
        query = select(Enrollment).where(Enrollment.lead_id == lead.id)
        if sequence:
            query = query.where(Enrollment.sequence_name == sequence)
        if active_only:
            query = query.where(Enrollment.phase.in_(ACTIVE_PHASES))
        rows = list(session.scalars(query.order_by(Enrollment.id)))
        if not rows:
            where = f" in {sequence}" if sequence else ""
            raise NotFound(f"{lead.email} has no running enrollment{where}")
        return rows

    def apply(self, email: str, sequence: str | None, make_event: Callable[[dt.datetime], eng.Event], kind: str) -> list[Enrollment]:
        """Feed one event (pause, resume, unenroll ...) through the engine for a lead's enrollments."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            self.sync_team(session)
            self.sync_sequences(session)
            changed = []
            for enrollment in self._enrollments(session, email, sequence):
                before = state_from_json(enrollment.state)
                new_state, actions = self.feed(session, enrollment, make_event(now))
                if new_state == before:
                    continue
                detail = "; ".join(_describe_action(a) for a in actions) or kind
                session.add(Event(lead_id=enrollment.lead_id, enrollment_id=enrollment.id, at=now, kind=kind, key_points=detail, status=new_state.crm_status.value, next_follow_up_at=enrollment.next_action_at))
                changed.append(enrollment)
            if not changed:
                raise Conflict(f"nothing to {kind}: the enrollment is already in that state")
            return changed

    # -- what will happen ---------------------------------------------------------------------------

    def timeline(self, session: Session, enrollment: Enrollment, limit: int = 24) -> list[PlannedItem]:
        seq = self.definition(enrollment)
        lead = enrollment.lead
        mailbox = self.mailbox_for(session, seq, lead, enrollment.seed)
        cal = self.calendar_for(seq, lead, mailbox)
        state = state_from_json(enrollment.state)
        items: list[PlannedItem] = []
        subjects: dict[int, str] = {}
        for action in eng.plan(state, seq, cal, limit=limit):
            local = cal.local(action.at)
            sender = mailbox.address if mailbox else "(no mailbox)"
            if isinstance(action, eng.SendEmail):
                rendered = self.templates.render(action.template, self.context(session, seq, lead, mailbox, action.step_id))
                if action.new_thread:
                    subjects[action.thread] = action.subject or rendered.subject
                    subject = subjects[action.thread]
                else:
                    subject = action.subject or reply_subject(subjects.get(action.thread, rendered.subject))
                items.append(PlannedItem(action.at, local, "email", action.step_key, action.template, action.thread, subject, sender))
            elif isinstance(action, eng.CreateTask):
                note = self.templates.render_string(action.note, self.context(session, seq, lead, mailbox, action.step_id), Location(seq.name))
                items.append(PlannedItem(action.at, local, "task", action.step_key, action.channel, None, note, lead.owner.name if lead.owner else ""))
            elif isinstance(action, eng.Escalate):
                target = action.notify
                if target == "manager" and lead.owner and lead.owner.manager:
                    target = lead.owner.manager.name
                detail = f"notify {target}" + (f"; {action.message_mode} {action.message_template}" if action.message_template else "")
                items.append(PlannedItem(action.at, local, "escalate", "escalate", detail, None, "", ""))
            elif isinstance(action, eng.GoDormant):
                revisit = f"revisit {cal.local(action.revisit_at):%a %d %b %Y}" if action.revisit_at else "no revisit"
                items.append(PlannedItem(action.at, local, "dormant", "dormant", revisit, None, "", ""))
            elif isinstance(action, eng.Revisit):
                items.append(PlannedItem(action.at, local, "revisit", "revisit", f"enroll in {action.then}", None, "", ""))
            elif isinstance(action, eng.Complete):
                items.append(PlannedItem(action.at, local, "complete", "complete", "sequence finished", None, "", ""))
        return items

    def enrollments(self, session: Session, *, email: str | None = None, sequence: str | None = None) -> list[Enrollment]:
        query = select(Enrollment).order_by(Enrollment.id)
        if email:
            query = query.where(Enrollment.lead_id == self.lead(session, email).id)
        if sequence:
            query = query.where(Enrollment.sequence_name == sequence)
        return list(session.scalars(query))

    def summary(self, session: Session) -> list[tuple[str, str, int]]:
        rows = session.execute(select(Enrollment.sequence_name, Enrollment.phase, func.count()).group_by(Enrollment.sequence_name, Enrollment.phase).order_by(Enrollment.sequence_name, Enrollment.phase))
        return [(name, phase, count) for name, phase, count in rows]

    def preview(self, sequence: str, step_id: str, email: str) -> Preview:
        loaded = self.sequences().get(sequence)
        if loaded is None:
            raise NotFound(f"no sequence {sequence!r}; known: {', '.join(sorted(self.sequences()))}")
        seq = loaded.definition
        if seq.index(step_id) is None:
            raise NotFound(f"{sequence} has no step {step_id!r}; its steps: {', '.join(s.id for s in seq.steps)}")
        step = seq.step(step_id)
        if step.template is None:
            raise InputError(Problem(loaded.locate("steps", seq.index(step_id) or 0), f"step {step_id!r} is a {step.task.channel if step.task else 'task'} task, not an email"))
        with transaction(self.sessions) as session:
            self.sync_team(session)
            lead = self.lead(session, email)
            running = session.scalars(select(Enrollment).where(Enrollment.lead_id == lead.id, Enrollment.sequence_name == sequence).order_by(Enrollment.id.desc())).first()
            seed = running.seed if running else 0
            # the whole thread from its start, so the subject chain is the one the lead sees
            state = eng.State.start(running.enrolled_at if running else self.clock.now(), seed)
            mailbox = self.mailbox_for(session, seq, lead, seed)
            cal = self.calendar_for(seq, lead, mailbox)
            subjects: dict[int, str] = {}
            for action in eng.plan(state, seq, cal, limit=len(seq.steps) + 2):
                if not isinstance(action, eng.SendEmail):
                    continue
                rendered = self.templates.render(action.template, self.context(session, seq, lead, mailbox, action.step_id))
                if action.new_thread:
                    subjects[action.thread] = action.subject or rendered.subject
                if action.step_id == step_id:
                    subject = subjects[action.thread] if action.new_thread else (action.subject or reply_subject(subjects.get(action.thread, rendered.subject)))
                    sender = f"{mailbox.display_name} <{mailbox.address}>" if mailbox else "(no mailbox)"
                    return Preview(sender=sender, recipient=lead.email, subject=subject, thread=action.thread, planned_at=action.at, local=cal.local(action.at), rendered=rendered)
        raise NotFound(f"step {step_id!r} is not reached in {sequence} for {email}")


IN_FLIGHT_CHECK = dt.timedelta(minutes=2)


def save_state(enrollment: Enrollment, state: eng.State, next_action_at: dt.datetime | None, at: dt.datetime) -> None:
    """Store the engine's state on its row, and the CRM status on the lead.

    An enrollment waiting for its email to go out is woken by delivery when it does; should that
    wake-up be lost (a worker killed between the two), the scheduler looks again a little later."""
    if next_action_at is None and state.phase is eng.Phase.ACTIVE and state.sending is not None:
        next_action_at = at + IN_FLIGHT_CHECK
    enrollment.state = state_to_json(state)
    enrollment.phase = state.phase.value
    enrollment.next_action_at = next_action_at
    enrollment.updated_at = at
    if state.phase in eng.TERMINAL and enrollment.ended_at is None:
        enrollment.ended_at = at
    for name in ("phase", "next_action_at", "ended_at"):  # written even when unchanged: every UPDATE of a flush alike, one executemany
        if name in vars(enrollment):  # loaded (a new row is inserted whole anyway)
            flag_modified(enrollment, name)
    enrollment.lead.status = state.crm_status.value


def running_enrollments(session: Session, lead_ids: set[int]) -> dict[int, list[Enrollment]]:
    """The leads' running enrollments, oldest first, in one query."""
    running: dict[int, list[Enrollment]] = {lead_id: [] for lead_id in lead_ids}
    if lead_ids:
        rows = session.execute(select(Enrollment.id, Enrollment.lead_id).where(Enrollment.lead_id.in_(lead_ids), Enrollment.phase.in_(ACTIVE_PHASES)).order_by(Enrollment.id)).all()
        # the poller has most of them in the session already (the enrollments its sends belong to): only the others are loaded
        held = {key: session.identity_map.get(identity_key(Enrollment, key)) for key, _ in rows}
        missing = [key for key, enrollment in held.items() if enrollment is None]
        if missing:
            held.update((e.id, e) for e in session.scalars(select(Enrollment).where(Enrollment.id.in_(missing))))
        for key, lead_id in rows:
            running[lead_id].append(held[key])  # type: ignore[arg-type]
    return running


def suppress(session: Session, email: str, reason: str, source: str, at: dt.datetime, *, known: set[str] | None = None) -> bool:
    """Never mail this address again; False when it already was. `known`: the addresses suppressed
    already, when the caller has read them (it is told of this one too)."""
    if known is not None:
        if email in known:
            return False
        known.add(email)
    elif any(isinstance(obj, Suppression) and obj.email == email for obj in session.new):
        return False  # earlier in this transaction: not flushed for one check (a chunk of bounces would flush once each)
    else:
        with session.no_autoflush:
            if session.scalar(select(Suppression.id).where(Suppression.email == email)) is not None:
                return False
    session.add(Suppression(email=email, reason=reason, source=source[:2000], created_at=at))
    return True


_RECORD_ROWS = "outreach.record_rows"  # session.info key: the lines of a batch, while one is open


def record(session: Session, enrollment: Enrollment | None, at: dt.datetime, kind: str, key_points: str, *, channel: str = "system", lead_id: int | None = None, **data: object) -> None:
    """One line of the lead's CRM record."""
    values = event_values(
        at, kind, key_points, channel=channel, lead_id=lead_id,
        enrollment_id=enrollment.id if enrollment else None, enrollment_lead_id=enrollment.lead_id if enrollment else None,
        lead_status=enrollment.lead.status if enrollment else "", next_follow_up_at=enrollment.next_action_at if enrollment else None,
        data=data,
    )
    rows: list[dict[str, Any]] | None = session.info.get(_RECORD_ROWS)
    if rows is not None:
        rows.append(values)
    else:
        session.add(Event(**values))


@contextlib.contextmanager
def recorded_in_one_statement(session: Session) -> Iterator[None]:
    """The record's lines written inside the block go to the database together at its end, in the
    order they were written: one executemany rather than an ORM object each, which cost the
    scheduler as much as the rest of an enrollment's visit. Nothing in the block reads them back."""
    rows: list[dict[str, Any]] = []
    session.info[_RECORD_ROWS] = rows
    try:
        yield
    finally:
        del session.info[_RECORD_ROWS]
    insert_rows(session, Event.__table__, rows)  # type: ignore[arg-type]


def event_values(
    at: dt.datetime, kind: str, key_points: str, *, channel: str = "system", lead_id: int | None = None, enrollment_id: int | None = None,
    enrollment_lead_id: int | None = None, lead_status: str | None = "", next_follow_up_at: dt.datetime | None = None, data: dict[str, object],
) -> dict[str, Any]:
    """The columns of one line of the lead's CRM record (`record` adds it as an object; a batch can
    insert many at once). The line's lead is the one given, else its enrollment's."""
    return {
        "lead_id": lead_id if lead_id is not None else enrollment_lead_id, "enrollment_id": enrollment_id, "at": at, "kind": kind,
        "channel": channel, "key_points": key_points, "status": lead_status or "", "next_follow_up_at": next_follow_up_at, "data": dict(data),
    }


def _smtp_transport(cfg: MailboxConfig, *, deadline: float | None = None) -> Transport:
    from outreach.mail.transports.smtp import SmtpTransport

    return SmtpTransport(cfg.smtp, deadline=deadline)


def _imap_store(cfg: MailboxConfig) -> MailStore:
    from outreach.mail.imap import ImapStore

    assert cfg.imap is not None
    return ImapStore(cfg.imap)


def _describe_action(action: eng.Action) -> str:
    if isinstance(action, eng.Pause):
        return f"paused until {action.until:%Y-%m-%d %H:%M} UTC" if action.until else "paused until resumed"
    if isinstance(action, eng.Resume):
        return "resumed"
    if isinstance(action, eng.Stop):
        return f"stopped ({action.reason})"
    return type(action).__name__.lower()
