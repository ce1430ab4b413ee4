"""The sandbox templates render in: Jinja2's immutable sandbox, with bounds on one rendering.

Jinja2's sandbox keeps a template away from Python's internals, but lets it build a string of any
size (`'a' * 10**11`) or loop 10**10 times (two nested ranges). Here, inside `bounded()`, one
rendering may take at most MAX_TURNS loop turns and calls (every turn of a `for`, every call of a
function, method, macro or filter) and MAX_SECONDS of CPU time; range() gives at most MAX_RANGE
numbers; and no string or list it builds, whether by an operator (`*`, `**`, `%`, `+`, `~`), a
filter, a method or a captured block, may hold more than MAX_SIZE characters or items. Where the
size is known before building (a repetition, a power, a sum, a width or precision in a format,
the width given to a filter or a string method) it is refused before anything is built;
otherwise as soon as it is built. The email's own output is bounded by its caller through
`Budget.fits` and `collect`.

A bound that is passed raises `LimitExceeded` inside the template's own code, so its traceback
names the template's file and line.
"""

from __future__ import annotations

import functools
import re
import string
import time
import types
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

MAX_SIZE = 1_000_000  # characters of one email, and characters or items of anything a template builds
MAX_TURNS = 100_000  # loop turns and calls of one rendering; an email needs a few hundred
MAX_RANGE = 10_000  # numbers from one range()
MAX_SECONDS = 1.0  # CPU time of one rendering; an email takes about a millisecond
MAX_BITS = 14_000  # of a number a product or a power builds (about 4,200 digits, which Python still prints)
_CLOCK_EVERY = 1024  # turns between two looks at the clock

T = TypeVar("T")


class LimitExceeded(jinja2.TemplateRuntimeError):
    """A template went past one of the bounds of a rendering."""


class Budget:
    """What is left to one rendering."""

    def __init__(self) -> None:
        self.turns = MAX_TURNS
        self.output = MAX_SIZE
        self._deadline = time.thread_time() + MAX_SECONDS

    def turn(self) -> None:
        self.turns -= 1
        if self.turns < 0:
            raise LimitExceeded(f"the template takes more than {MAX_TURNS} loop turns and calls; loop over less (a loop inside a loop multiplies their turns)")
        if self.turns % _CLOCK_EVERY == 0 and time.thread_time() > self._deadline:
            raise LimitExceeded(f"the template takes more than {MAX_SECONDS:g} s to render; make it do less")

    def fits(self, size: int) -> bool:
        """Counts `size` characters of output; False once the email is larger than MAX_SIZE."""
        self.output -= size
        return self.output >= 0


_current: ContextVar[Budget | None] = ContextVar("outreach_template_budget", default=None)


@contextmanager
def bounded() -> Iterator[Budget]:
    """One rendering's budget, counted by every template rendered inside."""
    budget = Budget()
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def collect(pieces: Iterator[str], budget: Budget) -> str:
    """A block's output, refused once the email passes MAX_SIZE characters: the error is thrown into
    the block's generator, so it is raised at the template's line that wrote past the bound."""
    parts = []
    for piece in pieces:
        if not budget.fits(len(piece)):
            error = LimitExceeded(f"the email renders more than {MAX_SIZE} characters; write a shorter one (is a loop larger than meant?)")
            if isinstance(pieces, Generator):
                pieces.throw(error)
            raise error
        parts.append(piece)
    return "".join(parts)


def _turn() -> None:
    budget = _current.get()
    if budget is not None:  # None while Jinja folds constants at compile time
        budget.turn()


def _too_big(size: int, sample: object) -> LimitExceeded:
    what = "characters" if isinstance(sample, str) else "items"
    return LimitExceeded(f"this would build {size} {what}; a template may build at most {MAX_SIZE} (is a repetition, a width or a loop larger than meant?)")


def sized(value: T) -> T:
    """`value`, refused if it is a string or list longer than MAX_SIZE."""
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_SIZE:
        raise _too_big(len(value), value)
    return value


def turns(iterable: Iterable[T]) -> Iterator[T]:
    """The items of a loop, each counted as a turn."""
    for item in iterable:
        _turn()
        yield item


def _concat(pieces: Iterable[str]) -> str:
    """Joins a captured block (`{% set %}`, a macro's body, `{% filter %}`) after counting its size."""
    parts = list(pieces)
    size = sum(map(len, parts))
    if size > MAX_SIZE:
        raise _too_big(size, "")
    return "".join(parts)


def _check_numbers(values: Iterable[object]) -> None:
    """A width, a count or a length given to a filter or a string method: at most MAX_SIZE."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SIZE:
            raise LimitExceeded(f"{value} is too large a width or count for a template; at most {MAX_SIZE}")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\d*)(?:\.(\d*))?")


def _check_format(fmt: str, style: str) -> None:
    """Widths and precisions written in a format string (`%9999999999s`, `{:>9999999999}`)."""
    numbers: list[str] = []
    if style == "%":
        for match in _PERCENT_SPEC.finditer(fmt.replace("%%", "")):
            numbers.extend(n for n in match.groups() if n)
    else:
        try:
            numbers = [n for _, _, spec, _ in string.Formatter().parse(fmt) if spec for n in re.findall(r"\d+", spec)]
        except ValueError:  # not a format string: str.format says so itself
            return
    _check_numbers(int(n) for n in numbers)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses, before it is built, a result of `*`, `**`, `+` or `%` that would be too large; a
    number squared over and over in a loop grows as fast as a repeated string."""
    sequence = (str, bytes, list, tuple)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, sequence) and isinstance(times, int) and len(seq) * times > MAX_SIZE:
                raise _too_big(len(seq) * times, seq)
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
            raise LimitExceeded(f"this product is too large a number for a template (over {MAX_BITS} bits)")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_BITS:
            raise LimitExceeded(f"{left} ** {right} is too large a number for a template (over {MAX_BITS} bits)")
    elif operator == "+":
        if isinstance(left, sequence) and isinstance(right, sequence) and len(left) + len(right) > MAX_SIZE:
            raise _too_big(len(left) + len(right), left)
    elif operator == "%" and isinstance(left, str):
        _check_format(left, "%")
        _check_numbers(right if isinstance(right, tuple) else (right,))


def _is_str_method(obj: Any) -> bool:
    inner = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
    return isinstance(inner, types.BuiltinMethodType) and isinstance(inner.__self__, str)


_WIDTHS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice", "replace", "format"})  # filters taking a width or a count


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that counts as a turn, takes no width or count over MAX_SIZE and builds nothing larger."""
    first = 2 if getattr(function, "jinja_pass_arg", None) is not None else 1  # the context, then the value
    widths = name in _WIDTHS

    @functools.wraps(function)  # keeps the pass_context / pass_environment marks
    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        _turn()
        if widths:
            _check_numbers(args[first:])
            _check_numbers(kwargs.values())
            if name == "format" and isinstance(args[first - 1], str):
                _check_format(args[first - 1], "%")
        return sized(function(*args, **kwargs))

    return bounded_filter


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise LimitExceeded(f"range() would give {len(numbers)} numbers; a template may count to at most {MAX_RANGE}")
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # Jinja's own argument names
    if n * max > MAX_TURNS:
        raise LimitExceeded(f"lipsum({n}, max={max}) would write up to {n * max} words; at most {MAX_TURNS}")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _call(name: str, argument: nodes.Node) -> nodes.Call:
    target = nodes.ImportedName(f"{__name__}.{name}", lineno=argument.lineno)
    return nodes.Call(target, [argument], [], None, None, lineno=argument.lineno)


class _Bounds(NodeTransformer):
    """Rewrites a template's tree: each loop counts its turns, each `~` its size."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("turns", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("sized", node)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        bounded_tree = _Bounds().visit(node)
        bounded_tree.set_environment(self.environment)
        super().visit_Template(bounded_tree, frame)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with the bounds above."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__, "{}")
        return wrapped

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _turn()
        if isinstance(obj, LoopContext) and args:  # loop(children) in a recursive loop: count those turns too
            args = (turns(args[0]), *args[1:])
        elif _is_str_method(obj):
            _check_numbers(args)
            _check_numbers(kwargs.values())
        return sized(super().call(context, obj, *args, **kwargs))
