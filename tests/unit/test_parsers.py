"""Parsers never crash on any input: they return a value or a located InputError."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.errors import InputError, LeadImportError
from outreach.leads import parse_csv
from outreach.mail.templates import TemplateSet
from outreach.sequences.loader import load_sequence_file
from outreach.yamlsrc import load_text

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = TemplateSet(ROOT / "templates")

yaml_like = st.text(alphabet=st.sampled_from(list("abc:- \n\t{}[]'\"#&*!|>%@`0123456789.")), max_size=200)


@settings(max_examples=300, deadline=None)
@given(yaml_like)
def test_the_yaml_loader_returns_data_or_a_located_error(text: str) -> None:
    try:
        doc = load_text(text, Path("x.yaml"))
    except InputError as exc:
        assert all(str(p.location).startswith("x.yaml") for p in exc.problems)
        return
    assert doc.path == Path("x.yaml")


step = st.fixed_dictionaries(
    {"id": st.sampled_from(["intro", "a", "B", "x y", "intro"]), "template": st.sampled_from(["initial_outreach", "closure"])},
    optional={"after": st.sampled_from(["2 days", "2-3 days", "x", "3", "4 business hours", "1 fortnight"]), "thread": st.sampled_from(["same", "new", "other"])},
)
sequence_docs = st.fixed_dictionaries(
    {"name": st.sampled_from(["ok", "Not OK", "x" * 70]), "steps": st.lists(step, max_size=3)},
    optional={
        "window": st.fixed_dictionaries({"days": st.sampled_from(["mon-fri", "funday"]), "hours": st.sampled_from(["09:00-17:00", "9-5"])}),
        "timezone": st.sampled_from(["lead", "Europe/Paris", "Nowhere/City"]),
        "holidays": st.sampled_from(["IN", "US-CA", "ZZ", "lead"]),
        "repeat": st.sampled_from(["every 1 month", "every x", {"every": "2 weeks", "times": 0}]),
        "on_reply": st.sampled_from(["stop", "continue", "explode"]),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence_docs)
def test_sequence_files_load_or_fail_with_located_problems(tmp_path: Path, data: dict[str, object]) -> None:
    import yaml

    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        loaded = load_sequence_file(path)
    except InputError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.location.path == path and problem.location.line is not None
        return
    assert loaded.definition.name == data["name"]


cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(cells, min_size=1, max_size=5), min_size=1, max_size=6))
def test_the_csv_reader_returns_rows_or_a_located_error(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Email", "First Name", "Company", "Notes", "Phone"][: max(len(r) for r in rows)])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leads.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        try:
            parsed = parse_csv(path)
        except LeadImportError as exc:
            assert exc.problems and all(p.location.path == path for p in exc.problems)
            return
    for row in parsed:
        assert "@" in row.email and row.email == row.email.lower()
        assert not any(ch in value for value in row.values.values() for ch in "\r\n\x00")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["first_name", "last_name", "company", "title", "industry", "proposal_url", "product"]), st.text(max_size=40), max_size=7))
def test_any_lead_data_renders_as_data(fields: dict[str, str]) -> None:
    """Whatever a lead's fields hold, every shipped template renders, and lead text is never evaluated."""
    lead = {"email": "x@example.com", "full_name": "", **fields}
    owner = {"name": "Priya Sharma", "first_name": "Priya", "email": "priya@appneural.example"}
    for name in TEMPLATES.names():
        rendered = TEMPLATES.render(name, {"lead": lead, "owner": owner, "mailbox": {}, "sequence": {"name": "s"}, "step": {"id": "x"}})
        assert "\n" not in rendered.subject and "\r" not in rendered.subject
        assert rendered.text.endswith("\n")


@pytest.mark.parametrize("payload", ["{{ 7*7 }}", "{% raw %}x{% endraw %}", "{{ lead.__class__ }}", "{{ cycler.__init__.__globals__ }}"])
def test_template_code_in_a_lead_field_is_printed_verbatim(payload: str) -> None:
    ctx = {"lead": {"email": "x@example.com", "first_name": payload}, "owner": {"name": "P"}, "mailbox": {}, "sequence": {"name": "s"}, "step": {"id": "x"}}
    rendered = TEMPLATES.render("initial_outreach", ctx)
    assert f"Hi {payload}," in rendered.text


def test_templates_are_compiled_once_and_an_edit_counts_from_the_next_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.mail import templates as tpl

    (tmp_path / "_sign.j2").write_text("Priya")
    (tmp_path / "note.j2").write_text('{% block subject %}Hello{% endblock %}{% block text %}Hi {{ lead.first_name }}, {% include "_sign.j2" %}{% endblock %}')
    clock = [100.0]
    monkeypatch.setattr(tpl.time, "monotonic", lambda: clock[0])
    templates = tpl.TemplateSet(tmp_path)
    lead = {"lead": {"first_name": "Ananya"}}
    assert templates.render("note", lead).text == "Hi Ananya, Priya\n"
    stats = []
    real_scandir = tpl.os.scandir
    monkeypatch.setattr(tpl.os, "scandir", lambda path: stats.append(path) or real_scandir(path))
    for _ in range(50):
        assert templates.render("note", lead).subject == "Hello"
    assert stats == [], "no look at the folder between two seconds"
    (tmp_path / "_sign.j2").write_text("Priya Sharma")
    (tmp_path / "later.j2").write_text("{% block subject %}Later{% endblock %}{% block text %}x{% endblock %}")
    assert templates.render("note", lead).text == "Hi Ananya, Priya\n", "within the second: the compiled templates"
    assert templates.check("later") and "does not exist" in templates.check("later")[0].message
    clock[0] += tpl.RECHECK
    assert templates.render("note", lead).text == "Hi Ananya, Priya Sharma\n", "an edit to an included file counts for those that include it"
    assert templates.check("later") == []
    assert len(stats) == 1
    (tmp_path / "later.j2").unlink()
    clock[0] += tpl.RECHECK
    assert "does not exist" in templates.check("later")[0].message
