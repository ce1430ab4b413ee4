"""One root error type; every error says where the problem is and what to do next."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class OutreachError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Location:
    """A place in a file: 1-based line and column (either may be unknown)."""

    path: Path | str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


@dataclass(frozen=True)
class Problem:
    """One located problem: where, what is wrong, and the fix."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InputError(OutreachError, ValueError):
    """Bad input from a file or the command line; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem, summary: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.summary = summary
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [self.summary] if self.summary else []
        lines.extend(str(p) for p in self.problems)
        return "\n".join(lines)


class ConfigError(InputError):
    """The workspace file or the environment is wrong."""


class SequenceError(InputError):
    """A sequence YAML file is wrong."""


class TemplateError(InputError):
    """A template is wrong, or cannot be rendered for a lead."""


class LeadImportError(InputError):
    """Rows of a leads file are wrong; nothing was imported."""


class NotFound(OutreachError, LookupError):
    """A named thing (lead, sequence, step) does not exist."""

    exit_code = 3


class Conflict(OutreachError):
    """The request contradicts the current state (e.g. the lead is suppressed)."""

    exit_code = 4


class Unavailable(OutreachError):
    """A server the program needs (the database) cannot be reached or used; start it, or correct its setting."""

    exit_code = 1
