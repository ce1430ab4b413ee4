"""Email templates: one Jinja2 file per email, with `subject`, `text` and optional `html` blocks.

Rendering is sandboxed, undefined variables are errors, and lead fields are plain data: a
lead whose name is "{{ 7*7 }}" is greeted as "{{ 7*7 }}". The html block is rendered with
autoescaping, the subject and text without. Templates see plain dictionaries, never ORM rows.

Rendering is bounded (see `outreach.mail.sandbox`): an email renders at most a million characters
in a bounded number of loop turns, a subject at most MAX_SUBJECT characters, and includes nest at
most MAX_INCLUDE_DEPTH deep and never come back to a template on their way. A template breaking
a bound, including itself, or not in UTF-8 gets a located error like any other.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from outreach.errors import Location, Problem, TemplateError
from outreach.mail.sandbox import (
    BoundedEnvironment,
    Budget,
    LimitExceeded,
    bounded,
    collect,
)

REQUIRED_BLOCKS = ("subject", "text")
SUFFIX = ".j2"
RECHECK = 1.0  # seconds between two looks at the templates folder
MAX_SUBJECT = 255  # characters of a rendered subject: one line in an inbox, and room for "Re: "
MAX_INCLUDE_DEPTH = 10
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class _Loader(jinja2.FileSystemLoader):
    """Reads templates as UTF-8, and names the first byte of a file that is not."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError as exc:
            raise TemplateError(_not_utf8(Path(self.searchpath[0], template), exc)) from exc


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> Problem:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as whole:  # the loader's offset counts from a chunk, not from the file
        exc = whole
    line = raw.count(b"\n", 0, exc.start) + 1
    return Problem(Location(path, line), f"{path.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8")


def _environment(directory: Path, autoescape: bool) -> BoundedEnvironment:
    env = BoundedEnvironment(
        loader=_Loader(str(directory)),
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
    if isinstance(exc, LimitExceeded):
        return exc.message or str(exc)
    if isinstance(exc, RecursionError):
        return "the template calls itself without end (an include, a macro or a recursive loop that never stops); give it a way out"
    if isinstance(exc, MemoryError):
        return "the template builds something too large for memory; build less"
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
        self._checked: dict[str, list[Problem]] = {}  # template name -> its problems, since the last change
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
                self._checked = {}
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
        """Encoding, syntax, the required blocks and the includes, without rendering."""
        self._look()
        checked = self._checked  # a change seen meanwhile replaces the dictionary: this result goes with the old one
        if name not in checked:
            checked[name] = self._check(name)
        return list(checked[name])

    def _check(self, name: str) -> list[Problem]:
        path = self.path(name)
        if f"{name}{SUFFIX}" not in self._stamps:
            return [Problem(Location(path), f"template {name!r} does not exist; create {path}")]
        try:
            template = self._text.get_template(f"{name}{SUFFIX}")
            includes = self._include_problems(f"{name}{SUFFIX}")
        except jinja2.TemplateSyntaxError as exc:
            return [Problem(Location(Path(exc.filename) if exc.filename else path, exc.lineno), f"template syntax error: {exc.message}")]
        except jinja2.TemplateNotFound as exc:  # removed since the last look
            return [Problem(Location(path), f"template {str(exc.name)!r} does not exist; create it in {self.directory}")]
        except TemplateError as exc:
            return exc.problems
        if includes:
            return includes
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

    def _include_problems(self, top: str) -> list[Problem]:
        """An include (or import, or extends) that comes back to a template on its own way, or
        includes nested deeper than MAX_INCLUDE_DEPTH; includes named by a constant only."""
        below: dict[str, int] = {}  # templates walked: the deepest nesting of includes under each

        def walk(way: list[tuple[str, int]], name: str) -> Problem | None:
            """`way`: the templates that led to `name`, each with the line of its include."""
            deepest = 0
            for target, line in self._references(name):
                here = [*way, (name, line)]
                names = [n for n, _ in here]
                if target in names:
                    start = names.index(target)
                    cycle = " -> ".join([*names[start:], target])
                    origin, at = here[start]
                    return Problem(Location(self.directory / origin, at), f"{target!r} includes itself ({cycle}); a template cannot include one that includes it")
                if len(here) > MAX_INCLUDE_DEPTH:
                    chain = " -> ".join([*names, target])
                    return Problem(Location(self.directory / name, line), f"includes nest more than {MAX_INCLUDE_DEPTH} deep ({chain}); include fewer levels")
                if target not in below:
                    problem = walk(here, target)
                    if problem:
                        return problem
                if len(here) + below[target] > MAX_INCLUDE_DEPTH:
                    return Problem(Location(self.directory / name, line), f"includes under {target!r} nest more than {MAX_INCLUDE_DEPTH} deep; include fewer levels")
                deepest = max(deepest, below[target] + 1)
            below[name] = deepest
            return None

        problem = walk([], top)
        return [problem] if problem else []

    def _references(self, filename: str) -> list[tuple[str, int]]:
        """The existing templates that `filename` includes, imports or extends by a constant name, with the lines."""
        source, _, _ = self._text.loader.get_source(self._text, filename)  # type: ignore[union-attr]
        tree = self._text.parse(source, filename, str(self.directory / filename))
        found = []
        kinds = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
        for node in tree.find_all(kinds):
            if not isinstance(node, kinds):  # narrows the type; find_all gave only these
                continue
            target = node.template
            names = target.items if isinstance(target, (nodes.List, nodes.Tuple)) else [target]
            for item in names:
                if isinstance(item, nodes.Const) and isinstance(item.value, str) and item.value in self._stamps:
                    found.append((item.value, node.lineno))
        return sorted(found, key=lambda reference: reference[1])

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        problems = self.check(name)
        if problems:
            raise TemplateError(problems)
        path = self.path(name)
        filename = f"{name}{SUFFIX}"
        frozen = freeze(context)
        with bounded() as budget:
            subject = _SPACE.sub(" ", self._block(self._text, filename, "subject", frozen, path, budget) or "").strip()
            text = (self._block(self._text, filename, "text", frozen, path, budget) or "").strip() + "\n"
            html = self._block(self._html, filename, "html", frozen, path, budget)
        if html is not None:
            html = html.strip() + "\n"
        if not subject:
            raise TemplateError(Problem(Location(path), "the subject block renders empty; write a subject"))
        if len(subject) > MAX_SUBJECT:
            raise TemplateError(
                Problem(self._block_location(filename, "subject", path), f"the subject renders to {len(subject)} characters; keep it within {MAX_SUBJECT} (an inbox shows one short line)")
            )
        return Rendered(subject=subject, text=text, html=html)

    def _block_location(self, filename: str, block: str, path: Path) -> Location:
        """Where a block starts: the compiled block's first line, mapped back to the template's."""
        template = self._text.get_template(filename)
        return Location(path, template.get_corresponding_lineno(template.blocks[block].__code__.co_firstlineno))

    def _block(self, env: BoundedEnvironment, filename: str, block: str, context: Mapping[str, Any], path: Path, budget: Budget) -> str | None:
        template = env.get_template(filename)
        if block not in template.blocks:
            return None
        try:
            try:
                return collect(template.blocks[block](template.new_context(dict(context))), budget)
            except Exception:  # noqa: BLE001 - re-raised at once, with the template's own file and line numbers
                env.handle_exception()
        except TemplateError:  # an included template that is not UTF-8, already located
            raise
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, AttributeError, KeyError, RecursionError, MemoryError) as exc:
            raise TemplateError(Problem(_where(exc, Location(path)), _explain(exc))) from exc
        raise AssertionError("unreachable")

    def render_string(self, source: str, context: Mapping[str, Any], where: Location) -> str:
        """A short template written inline (e.g. a task's note in a sequence file)."""
        try:
            template = self._text.from_string(source)
            with bounded():
                return str(template.render(dict(freeze(context)))).strip()
        except jinja2.TemplateSyntaxError as exc:
            line = (where.line or 1) + (exc.lineno or 1) - 1
            raise TemplateError(Problem(Location(where.path, line), f"template syntax error: {exc.message}")) from exc
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
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
