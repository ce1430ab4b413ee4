"""The position-keeping YAML loader refuses what would exhaust memory or the stack, with a location."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.config import load_workspace
from outreach.errors import InputError
from outreach.yamlsrc import MAX_DEPTH, load_text

ALIASES = "anchors (&) and aliases (*) are not supported; write the value out in full"


def _refusal(text: str) -> str:
    with pytest.raises(InputError) as caught:
        load_text(text, Path("x.yaml"))
    (problem,) = caught.value.problems
    return str(problem)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: &x 1\n", "1:4"),  # an anchor alone
        ("a: 1\nb: *x\n", "2:4"),  # an alias alone (before: "found undefined alias")
        ("a: &x [1, 2]\nb: *x\n", "1:4"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "1:7"),  # merge keys are aliases too
        ("a: &a [*a]\n", "1:4"),  # a structure that contains itself
    ],
)
def test_anchors_and_aliases_are_refused_where_they_stand(text: str, where: str) -> None:
    assert _refusal(text) == f"x.yaml:{where}: {ALIASES}"


def test_nesting_is_bounded_in_flow_and_block_style() -> None:
    assert load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, Path("x.yaml")).data is not None
    deeper = MAX_DEPTH + 1
    assert _refusal("[" * deeper + "]" * deeper).startswith(f"x.yaml:1:{deeper}: more than {MAX_DEPTH} levels of nesting")
    assert _refusal("[" * 10000).startswith(f"x.yaml:1:{deeper}: more than {MAX_DEPTH} levels")  # before: RecursionError
    assert _refusal("a: {" * 10000 + "}" * 10000).startswith("x.yaml:1:")
    block = "".join(f"{'  ' * level}k:\n" for level in range(200)) + "  " * 200 + "v\n"
    assert _refusal(block).startswith(f"x.yaml:{MAX_DEPTH}:{2 * MAX_DEPTH - 1}: more than")  # the 65th mapping: a key on line 64


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("a: " + "9" * 5000, "x.yaml:1:4: this value cannot be read (Exceeds the limit (4300 digits)"),
        ("a:\n  - 2026-13-45\n", "x.yaml:2:5: this value cannot be read (month must be in 1..12); put it in quotes to keep it as text"),
    ],
)
def test_a_scalar_python_cannot_hold_is_located(text: str, what: str) -> None:
    assert _refusal(text).startswith(what)


def test_the_workspace_file_refuses_aliases_too(tmp_path: Path) -> None:
    path = tmp_path / "outreach.yaml"
    path.write_text("timezone: &tz Asia/Kolkata\nmailboxes: []\n")
    with pytest.raises(InputError) as caught:
        load_workspace(path)
    assert str(caught.value.problems[0]) == f"{path}:1:11: {ALIASES}"


nested = st.recursive(st.integers(0, 9).map(str), lambda inner: st.lists(inner, min_size=1, max_size=2).map(lambda xs: "[" + ", ".join(xs) + "]"), max_leaves=200)


@given(nested)
def test_any_nesting_loads_or_is_refused_with_a_location(text: str) -> None:
    try:
        doc = load_text(text, Path("x.yaml"))
    except InputError as exc:
        assert str(exc.problems[0]).startswith("x.yaml:1:") and "levels of nesting" in str(exc)
        return
    assert doc.data is not None
