"""The language table (`outreach/mail/languages.py`) is well formed: its rows compile, its return-date
rows say where the date stands, and each language's opt-out stems are in whatever its rows match."""

from __future__ import annotations

import re

import pytest
from dateparser.languages.loader import default_loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.mail.languages import LANGUAGES, Language

PATTERN_FIELDS = ("automatic_subject", "automatic", "away", "notice", "opt_out", "negation", "footer")
CUE_FIELDS = ("back", "until", "through")
OPT_OUTS = [(language, row) for language in LANGUAGES for row in language.opt_out]


def test_each_language_once_and_known_to_dateparser() -> None:
    codes = [language.code for language in LANGUAGES]
    assert len(codes) == len(set(codes))
    assert set(default_loader.get_locale_map(languages=codes)) == set(codes)  # it raises on a language it does not know


@pytest.mark.parametrize("language", LANGUAGES, ids=lambda language: language.code)
def test_rows_compile_and_cues_say_where_the_date_stands(language: Language) -> None:
    for field in PATTERN_FIELDS:
        for row in getattr(language, field):
            re.compile(row, re.IGNORECASE)
    for field in CUE_FIELDS:
        for row in getattr(language, field):
            assert row.count("{date}") == 1, (field, row)
            re.compile(row.replace("{date}", "x"), re.IGNORECASE)
    assert all(stem == stem.lower() for stem in language.opt_out_stems)
    assert bool(language.opt_out) == bool(language.opt_out_stems)


@pytest.mark.parametrize(("language", "row"), OPT_OUTS, ids=[f"{language.code}-{n}" for n, (language, _) in enumerate(OPT_OUTS)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_opt_out_row_holds_a_stem_of_its_language(language: Language, row: str, data: st.DataObject) -> None:
    """Only the languages whose stems a text holds have their rows tried: a row that can match without
    one would never count."""
    text = data.draw(st.from_regex(re.compile(row, re.IGNORECASE), fullmatch=True))
    assert any(stem in text.lower() for stem in language.opt_out_stems), text
