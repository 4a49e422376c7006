"""Calibrated abstention: decide from the retrieval alone whether a question can be answered from the collection.

One cosine threshold cannot tell gibberish or an off-corpus question from a real one: MiniLM gives any short
string a cosine of ~0.25 to something, and "capital of Australia" 0.4 to a passage about a country. Two pieces of
evidence are used together:

- `top_relevance`: the best cosine between the question and a retrieved passage (dense evidence);
- `lexical_coverage`: the share of the question's content words (the BM25 tokenizer: stop words out, lightly
  stemmed) that occur in the retrieved passages (sparse evidence). Gibberish and off-corpus questions share
  almost no content words with the collection; a real question almost always names what it asks about.

The question is answered when `weight * top_relevance + (1 - weight) * lexical_coverage >= threshold`; else the
service abstains without calling the model. The defaults (settings `abstain_weight`, `abstain_threshold`) were
fitted on the committed dev set (answerable SQuAD questions vs gibberish and off-corpus questions) by
`bench/rag_trust.py`; its calibration table is in bench/results/rag_trust.md. The `margin` (best cosine minus the
mean of the rest, a relative score) is reported with each decision but not used: on the dev set it separated the
two sets worse than either absolute signal (see the table).

What it cannot catch: an on-topic question the passages happen not to answer (SQuAD's "impossible" questions) looks
answerable by both signals; the prompt tells the model to say so then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.rag.sparse import tokenize


@dataclass(frozen=True)
class Evidence:
    """What the decision is made from."""

    top_relevance: float
    lexical_coverage: float
    margin: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {
            "top_relevance": round(self.top_relevance, 4),
            "lexical_coverage": round(self.lexical_coverage, 4),
            "margin": round(self.margin, 4),
        }


def evidence(question: str, relevances: Sequence[float], texts: Sequence[str]) -> Evidence:
    """Dense and lexical evidence of one retrieval (relevances: cosines of the retrieved passages)."""
    if not relevances:
        return Evidence(0.0, 0.0, 0.0)
    ranked = sorted(relevances, reverse=True)
    rest = ranked[1:]
    margin = ranked[0] - (sum(rest) / len(rest)) if rest else 0.0
    words = set(tokenize(question))
    found: set[str] = set()
    for text in texts:
        found.update(tokenize(text))
    coverage = len(words & found) / len(words) if words else 0.0
    return Evidence(ranked[0], coverage, margin)


@dataclass(frozen=True)
class Abstainer:
    """The calibrated no-answer rule."""

    threshold: float
    weight: float
    enabled: bool = True

    def score(self, ev: Evidence) -> float:
        """The combined evidence the threshold applies to."""
        return self.weight * ev.top_relevance + (1 - self.weight) * ev.lexical_coverage

    def decide(self, question: str, relevances: Sequence[float], texts: Sequence[str]) -> dict[str, Any] | None:
        """None when the question looks answerable; else the abstention record the answer carries."""
        if not self.enabled:
            return None
        ev = evidence(question, relevances, texts)
        score = self.score(ev)
        if relevances and score >= self.threshold:
            return None
        return {
            "reason": "no_passages" if not relevances else "low_evidence",
            "score": round(score, 4),
            "threshold": self.threshold,
            "weight": self.weight,
            **ev.as_dict(),
        }
