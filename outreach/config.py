"""Configuration: the workspace file (outreach.yaml) and OUTREACH_* environment overrides.

Secrets never live in the file: a mailbox names the environment variable that holds its
password, and the value is read only when a connection is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from outreach.errors import ConfigError, Location, Problem
from outreach.sequences.calendar import zone
from outreach.yamlsrc import Document, load_file, schema_problems

WORKSPACE_FILE = "outreach.yaml"
ENV_PREFIX = "OUTREACH_"


def _address(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address: {exc}") from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str
    port: int = Field(ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password_env: str | None = None  # the NAME of the variable holding the secret
    # the environment the settings were loaded with, when one was given (load_settings binds it)
    _environ: Mapping[str, str] | None = PrivateAttr(default=None)

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError(f"{value!r}: give the name of an environment variable (e.g. OUTREACH_SMTP_PRIYA), not the secret")
        return value

    def password(self) -> str | None:
        if self.password_env is None:
            return None
        value = self._environ.get(self.password_env) if self._environ is not None else None
        if value is None:
            value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                Problem(Location("environment"), f"{self.password_env} is not set; export it with the mailbox password")
            )
        return value

    def __repr__(self) -> str:  # never show the secret, only where it comes from
        return f"ServerConfig(host={self.host!r}, port={self.port}, security={self.security!r}, username={self.username!r}, password_env={self.password_env!r})"


class ImapConfig(ServerConfig):
    sent_folder: str = "Sent"
    drafts_folder: str = "Drafts"
    save_sent: bool = True  # APPEND a copy to Sent; off where the server saves it itself


class MailboxConfig(_Strict):
    address: str
    name: str = ""
    smtp: ServerConfig
    imap: ImapConfig | None = None
    daily_cap: int = Field(200, ge=1)
    timezone: str = "UTC"
    min_interval: float = Field(20.0, ge=0)  # seconds between two messages from this mailbox
    jitter: float = Field(10.0, ge=0)  # plus up to this many seconds, so sending has no rhythm

    _norm = field_validator("address")(classmethod(lambda cls, v: _address(v)))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        zone(value)
        return value


class PersonConfig(_Strict):
    email: str
    name: str
    title: str = ""
    phone: str = ""
    mailbox: str | None = None  # defaults to the mailbox with the person's address
    manager: str | None = None  # the manager's email
    signature: str = ""

    _norm = field_validator("email")(classmethod(lambda cls, v: _address(v)))

    @field_validator("manager", "mailbox")
    @classmethod
    def _opt(cls, value: str | None) -> str | None:
        return _address(value) if value else None


class WorkspaceConfig(_Strict):
    database_url: str | None = None
    broker_url: str | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        zone(value)
        return value
    sequences: str = "sequences"
    templates: str = "templates"
    public_url: str = "http://127.0.0.1:8025"  # where the unsubscribe links point
    max_attempts: int = Field(8, ge=1)  # temporary failures before a message is dead-lettered
    retry_after: float = Field(30.0, ge=1, le=3600)  # seconds before the first retry; doubled after each, up to 1 h
    # seconds a worker holds a message it is sending; one that died is taken over after this
    # (each SMTP exchange is cut off at half of it, so a live worker never loses its claim)
    send_lease: float = Field(120.0, ge=10, le=3600)
    mailboxes: list[MailboxConfig] = Field(default_factory=list)
    team: list[PersonConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _links(self) -> WorkspaceConfig:
        boxes = {m.address for m in self.mailboxes}
        people = {p.email for p in self.team}
        if len(boxes) != len(self.mailboxes):
            raise ValueError("a mailbox address is listed twice")
        if len(people) != len(self.team):
            raise ValueError("a person is listed twice in team")
        for person in self.team:
            box = person.mailbox or person.email
            if person.mailbox and box not in boxes:
                raise ValueError(f"{person.email}: mailbox {box!r} is not in mailboxes")
            if person.manager and person.manager not in people:
                raise ValueError(f"{person.email}: manager {person.manager!r} is not in team")
        return self


@dataclass(frozen=True)
class Settings:
    """What a process runs with: the workspace plus OUTREACH_* overrides, read once at the edge."""

    root: Path
    workspace: WorkspaceConfig
    database_url: str
    broker_url: str
    secret_from_env: str = field(default="", repr=False)
    # where database_url was set, as errors about it name it: "OUTREACH_DATABASE_URL", or its place in outreach.yaml
    database_setting: str = "OUTREACH_DATABASE_URL"

    @property
    def secret_key(self) -> str:
        """OUTREACH_SECRET_KEY; the embedded default (SQLite) generates one under var/ on first use."""
        key = self.secret_from_env or _local_secret(self.root, self.database_url)
        if not key:
            raise ConfigError(
                Problem(Location("environment"), "OUTREACH_SECRET_KEY is not set; it signs unsubscribe links (e.g. export OUTREACH_SECRET_KEY=$(openssl rand -base64 32))")
            )
        return key

    @property
    def sequences_dir(self) -> Path:
        return (self.root / self.workspace.sequences).resolve()

    @property
    def templates_dir(self) -> Path:
        return (self.root / self.workspace.templates).resolve()

    def __repr__(self) -> str:
        return f"Settings(root={str(self.root)!r}, database_url={_hide(self.database_url)!r}, broker_url={_hide(self.broker_url)!r})"


def _hide(url: str) -> str:
    """postgresql://u:secret@h/db -> postgresql://u:***@h/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def load_workspace(path: Path) -> WorkspaceConfig:
    return _read_workspace(path)[0]


def _read_workspace(path: Path) -> tuple[WorkspaceConfig, Document]:
    doc = load_file(path)
    if doc.data is None:
        return WorkspaceConfig(), doc
    if not isinstance(doc.data, dict):
        raise ConfigError(Problem(Location(path, 1, 1), "the workspace file must be a mapping (key: value)"))
    try:
        return WorkspaceConfig.model_validate(doc.data), doc
    except ValidationError as exc:
        names = set(WorkspaceConfig.model_fields) | set(MailboxConfig.model_fields) | set(PersonConfig.model_fields) | set(ImapConfig.model_fields)
        raise ConfigError(schema_problems(doc, exc, frozenset(names))) from exc


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    if root is None:
        root = Path(env.get(f"{ENV_PREFIX}WORKSPACE", ".")).resolve()
    root = root.resolve()
    if not root.exists():
        raise ConfigError(Problem(
            Location(root),
            "no workspace here: no such folder; pass --workspace DIR (or set OUTREACH_WORKSPACE) naming the folder that holds outreach.yaml, "
            "or make this folder with an outreach.yaml in it (the shipped one, with its sequences/ and templates/, is a start)",
        ))
    file = root / WORKSPACE_FILE if root.is_dir() else root
    if root.is_file():
        root = root.parent
    workspace, doc = _read_workspace(file) if file.is_file() else (WorkspaceConfig(), None)
    if env.get(f"{ENV_PREFIX}DATABASE_URL"):
        database_url, setting = env[f"{ENV_PREFIX}DATABASE_URL"], f"{ENV_PREFIX}DATABASE_URL"
    elif workspace.database_url and doc is not None:
        database_url, setting = workspace.database_url, f"{doc.locate(('database_url',))}: database_url"
    else:
        database_url, setting = "sqlite:///var/outreach.sqlite", f"database_url (the default; set it in {file} or OUTREACH_DATABASE_URL)"
    _check_database_url(database_url, setting)
    if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:////"):
        relative = database_url[len("sqlite:///") :]
        if relative and relative != ":memory:":
            database_url = f"sqlite:///{(root / relative).resolve()}"
    broker_url = env.get(f"{ENV_PREFIX}BROKER_URL") or workspace.broker_url or "stub://"
    secret = env.get(f"{ENV_PREFIX}SECRET_KEY", "")
    if environ is not None:  # a mailbox's password is looked up there first, then in the process's environment
        for box in workspace.mailboxes:
            for server in (box.smtp, box.imap):
                if server is not None:
                    server._environ = environ
    return Settings(root=root, workspace=workspace, database_url=database_url, broker_url=broker_url, secret_from_env=secret, database_setting=setting)


DATABASE_URL_FORMS = "postgresql://user@host/dbname or sqlite:///path/to/file.sqlite"


def _check_database_url(url: str, setting: str) -> None:
    """A URL SQLAlchemy can read, naming a database it knows; the server is not asked yet."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(Problem(Location(setting), f"{_hide(url)!r} is not a database URL; write {DATABASE_URL_FORMS}")) from exc
    try:
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(Problem(Location(setting), f"{_hide(url)!r}: no database named {parsed.drivername!r} is supported; write {DATABASE_URL_FORMS}")) from exc


def _local_secret(root: Path, database_url: str) -> str:
    """The embedded default keeps a generated signing key beside its SQLite file; production sets one."""
    if not database_url.startswith("sqlite"):
        return ""
    path = root / "var" / "secret_key"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = _create_secret(path)
    if not key:
        raise ConfigError(Problem(Location(path), f"{path.relative_to(root)} is empty; delete it and a new key is made (links signed with the old one stop working)"))
    return key


def _create_secret(path: Path) -> str:
    """Make the key file whole before it has its name: the first process to link it wins, the others
    read the winner's, and nobody ever reads a half-written file."""
    import secrets
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".secret_key.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)
    return path.read_text().strip()
