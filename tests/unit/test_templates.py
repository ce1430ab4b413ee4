"""Templates: hostile or broken ones get a located error, quickly; ordinary ones render as before."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from outreach.errors import Location, TemplateError
from outreach.mail import templates as templates_module
from outreach.mail.templates import TemplateSet

CONTEXT = {"lead": {"email": "jane@example.com", "first_name": "Jane", "company": "Acme"}, "owner": {"name": "Priya"}}


def _email(body: str, subject: str = "Hello") -> str:
    """A template whose text block starts on line 3 with `body`."""
    return f"{{% block subject %}}{subject}{{% endblock %}}\n{{% block text %}}\n{body}\n{{% endblock %}}\n"


def _render_error(folder: Path, name: str) -> str:
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        TemplateSet(folder).render(name, CONTEXT)
    assert time.monotonic() - started < 3
    return str(caught.value)


HOSTILE = {
    "repetition": ("{{ 'a' * 10**11 }}", r"this would build 100000000000 characters; a template may build at most 1000000"),
    "list_repetition": ("{{ ([1, 2, 3] * 10000000) | length }}", r"this would build 30000000 items"),
    "power": ("{{ 10 ** (10 ** 8) }}", r"10 \*\* 100000000 is too large a number"),
    "squaring": ("{% set ns = namespace(x=2 ** 1000) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", r"this product is too large a number"),
    "range": ("{% for i in range(100000) %}{% endfor %}", r"range\(\) would give 100000 numbers; a template may count to at most 10000"),
    "nested_ranges": ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", r"the template takes more than 100000 loop turns"),
    "nested_strings": ("{% set s = 'ab' * 5000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", r"the template takes more than 100000 loop turns"),
    "method_width": ("{{ 'a'.ljust(10**10) }}", r"10000000000 is too large a width or count"),
    "filter_width": ("{{ 'a' | center(10000000000) }}", r"10000000000 is too large a width or count"),
    "percent_width": ("{{ '%9999999999s' % 'a' }}", r"9999999999 is too large a width or count"),
    "format_filter_width": ("{{ '%9999999999s' | format('a') }}", r"9999999999 is too large a width or count"),
    "format_method_width": ("{{ '{:>9999999999}'.format('a') }}", r"9999999999 is too large a width or count"),
    "doubling": ("{% set s = 'a' * 600000 %}{% set s = s ~ s %}{{ s | length }}", r"this would build 1200000 characters"),
    "captured_block": ("{% set s = 'a' * 900000 %}{% set t %}{% for i in range(100) %}{{ s }}{% endfor %}{% endset %}{{ t | length }}", r"this would build 90000000 characters"),
    "output": ("{% for i in range(3000) %}{{ 'x' * 1000 }}{% endfor %}", r"the email renders more than 1000000 characters"),
    "recursive_macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", r"the template calls itself without end"),
    "recursive_loop": ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", r"the template calls itself without end"),
    "lipsum": ("{{ lipsum(100000) }}", r"lipsum\(100000, max=100\) would write up to 10000000 words"),
}


@pytest.mark.parametrize(("body", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_template_that_would_exhaust_memory_or_time_is_refused_at_its_line(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "hostile.j2").write_text(_email(body))
    error = _render_error(tmp_path, "hostile")
    assert re.search(r"hostile\.j2:3: " + expected, error), error


def test_a_task_note_is_bounded_too(tmp_path: Path) -> None:
    where = Location("sequences/s.yaml", 9, 13)
    with pytest.raises(TemplateError, match=r"s\.yaml:9:13: this would build 100000000000 characters"):
        TemplateSet(tmp_path).render_string("Call {{ 'a' * 10**11 }}", CONTEXT, where)


def test_an_ordinary_template_renders_as_before(tmp_path: Path) -> None:
    (tmp_path / "_sign.j2").write_text("{{ owner.name }}\n")
    body = (
        "{% macro shout(word) %}{{ word | upper }}!{% endmacro %}"
        "{% for c in 'abc' %}{{ loop.index }}{{ c }}{{ loop.cycle(',', ';') if not loop.last }}{% endfor %}\n"
        "{{ shout(lead.first_name) }} {{ '%-5s|' | format('x') }} {{ '{:>4}'.format('y') }} {{ [3, 1, 2] | sort | join('-') }}"
        " {{ lead.company ~ '/' ~ lead.first_name }} {{ 'ab' * 2 }} {{ 2 ** 10 }} {{ '%d%%' % 60 }}\n"
        "{% for row in [{'n': 1}, {'n': 2}] | selectattr('n', 'gt', 1) %}{{ row.n }}{% endfor %}"
        " {{ range(3) | list | length }}\n"
        "{% include '_sign.j2' %}"
    )
    (tmp_path / "ordinary.j2").write_text(_email(body, subject="About {{ lead.company }}"))
    rendered = TemplateSet(tmp_path).render("ordinary", CONTEXT)
    assert rendered.subject == "About Acme"
    assert rendered.text == "1a,2b;3cJANE! x    |    y 1-2-3 Acme/Jane abab 1024 60%\n2 3\nPriya\n"


def test_a_template_including_itself_is_named_with_the_way_round(tmp_path: Path) -> None:
    (tmp_path / "self.j2").write_text(_email("Hi\n{% include 'self.j2' %}"))
    assert TemplateSet(tmp_path).check("self") and re.search(
        r"self\.j2:4: 'self\.j2' includes itself \(self\.j2 -> self\.j2\)", _render_error(tmp_path, "self")
    )


def test_templates_including_each_other_are_named_with_the_way_round(tmp_path: Path) -> None:
    (tmp_path / "first.j2").write_text(_email("{% include '_second.j2' %}"))
    (tmp_path / "_second.j2").write_text("one\n{% import '_third.j2' as third %}\n")
    (tmp_path / "_third.j2").write_text("{% include ['_missing.j2', '_second.j2'] %}")
    error = _render_error(tmp_path, "first")
    assert re.search(r"_second\.j2:2: '_second\.j2' includes itself \(_second\.j2 -> _third\.j2 -> _second\.j2\)", error), error


def test_an_include_named_at_rendering_that_comes_back_is_stopped(tmp_path: Path) -> None:
    (tmp_path / "dynamic.j2").write_text(_email("{% set me = 'dyn' ~ 'amic.j2' %}{% include me %}"))
    assert re.search(r"dynamic\.j2:3: the template calls itself without end", _render_error(tmp_path, "dynamic"))


def test_includes_nest_at_most_ten_deep(tmp_path: Path) -> None:
    (tmp_path / "deep.j2").write_text(_email("{% include '_1.j2' %}"))
    for level in range(1, 12):
        (tmp_path / f"_{level}.j2").write_text(f"{{% include '_{level + 1}.j2' %}}" if level < 11 else "bottom")
    error = _render_error(tmp_path, "deep")
    assert re.search(r"_10\.j2:1: includes nest more than 10 deep \(deep\.j2 -> _1\.j2 -> .* -> _10\.j2 -> _11\.j2\)", error), error
    (tmp_path / "_10.j2").write_text("bottom")
    assert TemplateSet(tmp_path).render("deep", CONTEXT).text == "bottom\n"


def test_a_template_not_in_utf8_names_the_byte_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "latin.j2").write_bytes(_email("Hi,\nThe caf\xe9 opens.").encode("latin-1"))
    expected = r"latin\.j2:4: latin\.j2 is not UTF-8 text \(byte 0xe9 at offset 67\); save it as UTF-8"
    assert re.search(expected, _render_error(tmp_path, "latin"))
    assert re.search(expected, str(TemplateSet(tmp_path).check("latin")[0]))


def test_an_included_template_not_in_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "main.j2").write_text(_email("{% include '_part' ~ '.j2' %}"))  # named at rendering: found then
    (tmp_path / "_part.j2").write_bytes(b"ok\nna\xefve\n")
    assert re.search(r"_part\.j2:2: _part\.j2 is not UTF-8 text \(byte 0xef at offset 5\)", _render_error(tmp_path, "main"))


def test_a_subject_longer_than_255_characters_is_refused_at_its_block(tmp_path: Path) -> None:
    subject_at_line_3 = "{# a comment #}\n\n{% block subject %}{{ lead.company }} {{ 'x' * (width - 5) }}{% endblock %}\n{% block text %}Hi{% endblock %}\n"
    for width, fits in ((255, True), (256, False)):
        (tmp_path / "wide.j2").write_text(subject_at_line_3.replace("width", str(width)))
        templates = TemplateSet(tmp_path)
        if fits:
            assert len(templates.render("wide", CONTEXT).subject) == 255
        else:
            assert re.search(r"wide\.j2:3: the subject renders to 256 characters; keep it within 255", _render_error(tmp_path, "wide"))


def test_a_fixed_template_is_seen_at_the_next_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates_module, "RECHECK", 0.0)
    templates = TemplateSet(tmp_path)
    path = tmp_path / "loop.j2"
    path.write_text(_email("{% include 'loop.j2' %}"))
    assert templates.check("loop")
    path.write_text(_email("fixed"))
    later = path.stat().st_mtime_ns + 10**9  # two writes in a row may share a timestamp
    os.utime(path, ns=(later, later))
    assert templates.check("loop") == []
    assert templates.render("loop", CONTEXT).text == "fixed\n"
