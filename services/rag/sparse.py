"""BM25-style sparse vectors: hashed token ids with saturated term frequencies; Qdrant applies the IDF.

Documents get BM25's TF part, tf*(k1+1) / (tf + k1*(1-b+b*len/avgdl)); queries get 1 per distinct term.
With the collection's sparse vector created with `modifier=IDF`, Qdrant multiplies each query term by
its inverse document frequency at search time, which completes BM25 without us keeping corpus stats.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

_TOKEN = re.compile(r"[a-z0-9]+")
# A short English stop list: these terms carry no retrieval signal and bloat every vector.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "do",
        "does",
        "did",
        "how",
        "can",
        "not",
        "no",
        "so",
        "than",
        "then",
        "into",
        "about",
        "over",
        "also",
        "been",
        "being",
    ]
)


def _stem(token: str) -> str:
    """A deliberately tiny stemmer (plurals only): cheap, predictable, good enough for BM25 recall."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words, lightly stemmed."""
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def token_id(token: str) -> int:
    """A stable 32-bit id (crc32): the same on every replica and across restarts."""
    return zlib.crc32(token.encode("utf-8"))


@dataclass(frozen=True)
class SparseVec:
    """Indices sorted ascending, values aligned."""

    indices: list[int]
    values: list[float]


class BM25Encoder:
    """Stateless encoder; `avgdl` is a fixed estimate of chunk length in tokens."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, avgdl: float = 120.0) -> None:
        self.k1 = k1
        self.b = b
        self.avgdl = avgdl

    def _vector(self, weights: dict[int, float]) -> SparseVec:
        indices = sorted(weights)
        return SparseVec(indices, [weights[i] for i in indices])

    def encode_document(self, text: str) -> SparseVec:
        """Saturated term frequencies with length normalisation."""
        tokens = tokenize(text)
        counts = Counter(token_id(t) for t in tokens)
        norm = self.k1 * (1 - self.b + self.b * len(tokens) / self.avgdl)
        return self._vector({i: tf * (self.k1 + 1) / (tf + norm) for i, tf in counts.items()})

    def encode_query(self, text: str) -> SparseVec:
        """One per distinct query term; the collection's IDF modifier weighs them."""
        return self._vector({token_id(t): 1.0 for t in set(tokenize(text))})
