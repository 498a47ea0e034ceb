"""The text analyzer of the ``bm25`` kind: the same function turns documents and queries
into terms, so that a query term can only ever match what indexing produced.

Lowercase -> word tokens (runs of letters/digits, Unicode-aware) -> drop English
stopwords (the classic 33-word list that Lucene's EnglishAnalyzer uses) -> Snowball
English stemmer (PyStemmer, a C implementation with its own cache).
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

#: Lucene's default English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET).
# fmt: off
ENGLISH_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))
# fmt: on

#: Letters and digits; underscores and punctuation split tokens ("covid-19" -> covid, 19).
TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


class Analyzer:
    """Callable ``text -> list[str]`` of stemmed terms (order kept, duplicates kept:
    term frequencies are counted by the caller)."""

    name = "snowball-english-v1"

    def __init__(self, stopwords: frozenset[str] = ENGLISH_STOPWORDS):
        self.stopwords = stopwords
        self._stem = _stemmer().stemWords

    def __call__(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise ValueError(f"analyzer input must be str, got {type(text).__name__}")
        tokens = [t for t in TOKEN_RE.findall(text.lower()) if t not in self.stopwords]
        return self._stem(tokens)


def analyze(text: str) -> list[str]:
    """Analyze with the default analyzer."""
    return _default()(text)


@lru_cache(maxsize=1)
def _default() -> Analyzer:
    return Analyzer()
