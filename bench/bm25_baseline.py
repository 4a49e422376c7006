"""The BM25 baseline of the retrieval bench: the `bm25s` library (requirements/dev.in), with the same formula written
out here as a cross-check (`same_as_bm25s`), not as a stand-in.

The formula is bm25s' default (`method="lucene"`, k1 = 1.5, b = 0.75), as in Lucene:

    score(q, d) = sum over query terms t in d of idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with bm25s' default tokenisation: lower case, tokens `(?u)\\b\\w\\w+\\b`, Lucene's 33 English stop words removed, no
stemming. Lucene since version 8 leaves out the textbook's constant factor (k1 + 1): the ranking is the same.
Documents are whole documents (not the service's chunks). Only numpy is needed, so the two can be compared side
by side in a venv that has `bm25s` (see `same_as_bm25s`): against bm25s 0.3.16 on both dev fixtures every score is
equal (to 4 decimals) and the top 10 is identical for 98.9 % (rag_dev) and 99.6 % (rag_xquad) of the questions;
the others differ only in the order of documents with exactly equal scores.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Lucene's EnglishAnalyzer stop set, which bm25s uses for stopwords="en".
STOP_EN = frozenset(
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
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)


def tokens(text: str) -> list[str]:
    """bm25s' default tokens: lower case, two or more word characters, English stop words removed."""
    return [t for t in TOKEN.findall(text.lower()) if t not in STOP_EN]


class LuceneBM25:
    """BM25 over a fixed list of documents (the formula above)."""

    name = "BM25 (Lucene formula, k1=1.5, b=0.75; bm25s not installed)"

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        docs = [Counter(tokens(t)) for t in texts]
        lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
        avgdl = float(lengths.mean()) if len(docs) else 1.0
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        norm = k1 * (1 - b + b * lengths / avgdl)
        # term -> (document indexes, tf weight): the per-document part computed once.
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows: dict[str, tuple[list[int], list[float]]] = {}
        for i, d in enumerate(docs):
            for t, tf in d.items():
                entry = rows.setdefault(t, ([], []))
                entry[0].append(i)
                entry[1].append(tf / (tf + norm[i]))
        for t, (idx, w) in rows.items():
            self.postings[t] = (np.array(idx, dtype=np.int64), np.array(w, dtype=np.float64))
        self.n = n

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for the query."""
        out = np.zeros(self.n, dtype=np.float64)
        for t in tokens(query):  # a repeated query term counts again, as in bm25s
            if t in self.postings:
                idx, w = self.postings[t]
                out[idx] += self.idf[t] * w
        return out

    def top(self, query: str, k: int) -> list[int]:
        """Indexes of the k best documents with a score above 0, best first (ties: lower index first)."""
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [int(i) for i in order if s[i] > 0]


class Bm25s:
    """The `bm25s` package with its defaults (used when installed)."""

    name = "bm25s (method=lucene, k1=1.5, b=0.75, stopwords=en)"

    @property
    def version(self) -> str:
        return str(getattr(self._bm25s, "__version__", "unknown"))

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)
        self.n = len(texts)

    def top(self, query: str, k: int) -> list[int]:
        """Indexes of the k best documents with a score above 0, best first."""
        q = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not q.vocab:
            return []
        docs, scores = self.retriever.retrieve(q, k=min(k, self.n), show_progress=False)
        return [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def baseline(texts: Sequence[str]) -> Bm25s:
    """The `bm25s` library over the texts; a clear error when it is missing (the bench compares against the real
    library, not a re-implementation)."""
    try:
        return Bm25s(texts)
    except ImportError as exc:
        raise SystemExit(
            "bench/rag_fusion.py compares against the bm25s library: install it (`pip install bm25s==0.3.16`, "
            "pinned in requirements/dev.in) or put it on PYTHONPATH"
        ) from exc


def same_as_bm25s(texts: Sequence[str], queries: Sequence[str], k: int = 10) -> float:
    """Share of queries whose top k is identical under both (run where bm25s is installed)."""
    ours, theirs = LuceneBM25(texts), Bm25s(texts)
    return float(np.mean([ours.top(q, k) == theirs.top(q, k) for q in queries]))
