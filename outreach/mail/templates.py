"""Email templates: one Jinja2 file per email, with `subject`, `text` and optional `html` blocks.

Rendering is sandboxed, undefined variables are errors, and lead fields are plain data: a
lead whose name is "{{ 7*7 }}" is greeted as "{{ 7*7 }}". The html block is rendered with
autoescaping, the subject and text without. Templates see plain dictionaries, never ORM rows.

A template is compiled once and kept. The folder is looked at again at most once a second (a
render does no file-system call of its own, which in a worker with many threads each costs a turn
at the interpreter lock): an edit, a new or a removed template counts from the next look.
"""

from __future__ import annotations

import os
import re
import threading
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from outreach.errors import Location, Problem, TemplateError

REQUIRED_BLOCKS = ("subject", "text")
SUFFIX = ".j2"
RECHECK = 1.0  # seconds between two looks at the templates folder
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def _environment(directory: Path, autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # TemplateSet looks for changes itself, once a second for the whole folder
    )
    return env


def _where(exc: BaseException, fallback: Location) -> Location:
    """The template file and line a rendering error came from (Jinja keeps them in the traceback)."""
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None)
    if filename and lineno:
        return Location(filename, lineno)
    tb = exc.__traceback__
    found = fallback
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(SUFFIX) or code.co_filename == "<template>":
            name = code.co_filename if code.co_filename != "<template>" else str(fallback.path)
            line = tb.tb_lineno
            if code.co_filename == "<template>" and fallback.line:
                line = fallback.line + tb.tb_lineno - 1
            found = Location(name, line)
        tb = tb.tb_next
    return found


def _explain(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        message = exc.message or str(exc)
        match = re.search(r"has no attribute '([^']+)'|'([^']+)' is undefined", message)
        name = next((g for g in match.groups() if g), None) if match else None
        if name:
            return f"{name!r} is not set; give it a fallback, e.g. {{{{ ...{name} | default(\"...\") }}}}, or fill the field"
        return message
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"not allowed in a template: {exc}"
    return f"{type(exc).__name__}: {exc}"


class TemplateSet:
    """The templates of one workspace."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._text = _environment(directory, autoescape=False)
        self._html = _environment(directory, autoescape=True)
        self._stamps: dict[str, int] = {}  # file name -> modification time (ns), at the last look
        self._looked = -RECHECK
        self._lock = threading.Lock()

    def _look(self) -> None:
        """At most once a second: the folder's files and their times; compiled templates are dropped
        when any file changed (one may extend or include another)."""
        if time.monotonic() - self._looked < RECHECK:
            return
        with self._lock:
            if time.monotonic() - self._looked < RECHECK:
                return
            try:
                stamps = {entry.name: entry.stat().st_mtime_ns for entry in os.scandir(self.directory) if entry.name.endswith(SUFFIX) and entry.is_file()}
            except OSError:  # no folder: no templates
                stamps = {}
            if stamps != self._stamps:
                self._text.cache.clear()  # type: ignore[union-attr]
                self._html.cache.clear()  # type: ignore[union-attr]
                self._stamps = stamps
            self._looked = time.monotonic()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}") if not p.name.startswith("_"))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def check(self, name: str) -> list[Problem]:
        """Syntax and the required blocks, without rendering."""
        path = self.path(name)
        self._look()
        if f"{name}{SUFFIX}" not in self._stamps:
            return [Problem(Location(path), f"template {name!r} does not exist; create {path}")]
        try:
            template = self._text.get_template(f"{name}{SUFFIX}")
        except jinja2.TemplateSyntaxError as exc:
            return [Problem(Location(path, exc.lineno), f"template syntax error: {exc.message}")]
        missing = [b for b in REQUIRED_BLOCKS if b not in template.blocks]
        if missing:
            return [
                Problem(
                    Location(path, 1),
                    "missing block(s) " + ", ".join(missing) + "; an email template needs "
                    "{% block subject %}...{% endblock %} and {% block text %}...{% endblock %}",
                )
            ]
        return []

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        problems = self.check(name)
        if problems:
            raise TemplateError(problems)
        path = self.path(name)
        filename = f"{name}{SUFFIX}"
        frozen = freeze(context)
        subject = _SPACE.sub(" ", self._block(self._text, filename, "subject", frozen, path) or "").strip()
        text = (self._block(self._text, filename, "text", frozen, path) or "").strip() + "\n"
        html = self._block(self._html, filename, "html", frozen, path)
        if html is not None:
            html = html.strip() + "\n"
        if not subject:
            raise TemplateError(Problem(Location(path), "the subject block renders empty; write a subject"))
        return Rendered(subject=subject, text=text, html=html)

    def _block(self, env: ImmutableSandboxedEnvironment, filename: str, block: str, context: Mapping[str, Any], path: Path) -> str | None:
        template = env.get_template(filename)
        if block not in template.blocks:
            return None
        try:
            try:
                return "".join(template.blocks[block](template.new_context(dict(context))))
            except Exception:
                env.handle_exception()  # re-raises with the template's own file and line numbers
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, AttributeError, KeyError) as exc:
            raise TemplateError(Problem(_where(exc, Location(path)), _explain(exc))) from exc
        raise AssertionError("unreachable")

    def render_string(self, source: str, context: Mapping[str, Any], where: Location) -> str:
        """A short template written inline (e.g. a task's note in a sequence file)."""
        try:
            template = self._text.from_string(source)
            return str(template.render(dict(freeze(context)))).strip()
        except jinja2.TemplateSyntaxError as exc:
            line = (where.line or 1) + (exc.lineno or 1) - 1
            raise TemplateError(Problem(Location(where.path, line), f"template syntax error: {exc.message}")) from exc
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(Problem(where, _explain(exc))) from exc


def freeze(value: Any) -> Any:
    """Plain, read-only data for templates: mappings become read-only, nothing else is callable."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({str(k): freeze(v) for k, v in value.items() if v is not None and v != ""})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
