"""Is a reply negative feedback? VADER's lexicon, sentence by sentence (English).

A single sour sentence in an otherwise polite reply is what a manager needs to see, so the
most negative sentence decides, at VADER's own threshold for "negative" (compound <= -0.05).
"""

from __future__ import annotations

import re
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

NEGATIVE = -0.05
_SENTENCES = re.compile(r"(?<=[.!?:;])\s+|\n{2,}")


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def most_negative(text: str) -> float:
    """The lowest compound score of the text's sentences (1.0 for an empty text)."""
    parts = [p.strip() for p in _SENTENCES.split(text) if p.strip()]
    return min((_analyzer().polarity_scores(p)["compound"] for p in parts), default=1.0)


def is_negative(text: str) -> bool:
    return most_negative(text) <= NEGATIVE
