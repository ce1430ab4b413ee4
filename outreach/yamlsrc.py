"""YAML with positions: load a document and remember where every value stood.

Errors about a value (from the schema) are reported at its file, line and column.
Anchors and aliases are refused (a few hundred bytes of nested aliases expand to billions of
values), and so is nesting deeper than MAX_DEPTH (the composer recurses once a level).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from outreach.errors import InputError, Location, Problem

PathKey = tuple[str | int, ...]

MAX_DEPTH = 64  # levels of nesting; sequence and workspace files need fewer than ten


@dataclass(frozen=True)
class Document:
    path: Path
    data: Any
    positions: dict[PathKey, tuple[int, int]]
    key_positions: dict[PathKey, tuple[int, int]]

    def locate(self, loc: tuple[Any, ...], *, key: bool = False) -> Location:
        """The best-known place for a schema location (unknown parts are skipped).

        With key=True, the place of the key itself rather than of its value.
        """
        current: PathKey = ()
        for part in loc:
            candidate = (*current, part)
            if candidate in self.positions:
                current = candidate
        table = self.key_positions if key and current in self.key_positions else self.positions
        line, column = table.get(current, (1, 1))
        return Location(self.path, line, column)


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML this loader declines to read; `problem` says what to do instead."""


class _Loader(yaml.SafeLoader):
    """The safe loader, without anchors and aliases, with bounded nesting, and located value errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:  # an alias's name is its anchor
            raise _refused("anchors (&) and aliases (*) are not supported; write the value out in full", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise _refused(f"more than {MAX_DEPTH} levels of nesting; check for unclosed brackets, or flatten the structure", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # an int beyond Python's digit limit, a 13th month ...
            raise _refused(f"this value cannot be read ({exc}); put it in quotes to keep it as text", node.start_mark) from exc


def _refused(problem: str, mark: Any) -> _Refused:
    return _Refused(problem=problem, problem_mark=mark)


def _walk(
    node: yaml.Node,
    key: PathKey,
    positions: dict[PathKey, tuple[int, int]],
    path: Path,
    key_positions: dict[PathKey, tuple[int, int]],
) -> None:
    positions[key] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if name in seen:
                raise InputError(
                    Problem(
                        Location(path, line, key_node.start_mark.column + 1),
                        f"key {name!r} appears twice (first on line {seen[name]}); keep one",
                    )
                )
            seen[name] = line
            key_positions[(*key, name)] = (line, key_node.start_mark.column + 1)
            _walk(value_node, (*key, name), positions, path, key_positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*key, index), positions, path, key_positions)


def load_text(text: str, path: Path) -> Document:
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise InputError(Problem(where, what if isinstance(exc, _Refused) else f"this is not valid YAML: {what}")) from exc
    except yaml.YAMLError as exc:
        raise InputError(Problem(Location(path), f"this is not valid YAML: {exc}")) from exc
    positions: dict[PathKey, tuple[int, int]] = {}
    key_positions: dict[PathKey, tuple[int, int]] = {}
    if node is not None:
        _walk(node, (), positions, path, key_positions)
    return Document(path=path, data=data, positions=positions, key_positions=key_positions)


def load_file(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(Problem(Location(path), "no such file")) from exc
    except UnicodeDecodeError as exc:
        raise InputError(Problem(Location(path), f"not UTF-8 text ({exc.reason}); save it as UTF-8")) from exc
    return load_text(text, path)


def schema_problems(doc: Document, exc: Any, vocabulary: frozenset[str] = frozenset()) -> list[Problem]:
    """Translate a pydantic ValidationError into located problems."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error.get("loc", ()))
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        kind = error.get("type")
        if kind == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" + _suggest(loc[-1], vocabulary)
        elif kind == "missing":
            message = f"missing required field {loc[-1]!r}"
        problems.append(problem_at(doc, loc, message, key=kind == "extra_forbidden"))
    return problems


def problem_at(doc: Document, loc: tuple[Any, ...], message: str, *, key: bool = False) -> Problem:
    """A problem with a value, at its place in the file and named by its path (steps[1].after)."""
    dotted = _dotted(loc)
    return Problem(doc.locate(loc, key=key), f"{dotted}: {message}" if dotted else message)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (part[:1].isupper() or part.startswith("function-")):
            continue  # a union member's tag, not a place in the file
        else:
            out += f".{part}" if out else str(part)
    return out


def _suggest(name: Any, vocabulary: frozenset[str]) -> str:
    import difflib

    match = difflib.get_close_matches(str(name), sorted(vocabulary), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""
