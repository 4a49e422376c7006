"""METRICS: the evaluation metrics by name, the one list the eval endpoint, the docs and the tests derive from.

Two kinds, each with its Protocol. A *retrieval* metric scores one ranked list of ids against the relevant
(gold) ids; its name says where it looks: `recall@k` is reported once per requested k (`recall@1`, `recall@5`),
`mrr@10` always at 10. An *answer* metric scores one generated answer; None where it does not apply (no
answer, no reference), and None values are left out of the means. Adding a metric is one function (in this
file or its own) and one line in METRICS; docs/extending.md walks through it.

The LLM-judge faithfulness (`faithfulness_judge`) is not here: it calls the gateway, so `Evaluator` runs it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from services.rag.embedder import Embedder
from services.rag.sparse import tokenize

_CITE = re.compile(r"\[\d{1,2}\]")
_SENT = re.compile(r"(?<=[.!?])\s+")


class RetrievalMetric(Protocol):
    """Scores the first `k` ids of a ranked list against the relevant ids (binary relevance)."""

    def __call__(self, ranked: Sequence[str], gold: set[str], k: int) -> float:
        """A value in [0, 1]."""
        ...


@dataclass(frozen=True)
class AnswerSample:
    """One evaluated answer and what it was built from."""

    question: str
    answer: str  # empty when the service abstained
    not_found: bool  # the service said it found nothing to answer from
    contexts: list[str]  # the passages the answer was generated from
    reference: str | None  # the question's reference answer, when the eval set has one
    groundedness: float | None  # the answer's own attribution (attribution.py)
    embedder: Embedder


class AnswerMetric(Protocol):
    """Scores one answer; None where the metric does not apply."""

    def __call__(self, sample: AnswerSample) -> float | None:
        """A value, usually in [0, 1], or None."""
        ...


def recall(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Share of the relevant ids found in the first k."""
    return len(gold.intersection(ranked[:k])) / len(gold) if gold else 0.0


def hit(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 when any relevant id is in the first k."""
    return 1.0 if gold.intersection(ranked[:k]) else 0.0


def mrr(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 / rank of the first relevant id in the first k (0 when none)."""
    first = next((i for i, r in enumerate(ranked[:k], start=1) if r in gold), None)
    return 1.0 / first if first else 0.0


def ndcg(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Rank-discounted gain of the first k over the best possible ordering."""
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(ranked[:k], start=1) if r in gold)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), k) + 1))
    return dcg / idcg if idcg else 0.0


def claims(answer: str) -> list[str]:
    """Sentences of an answer without citation markers (each one a claim to check)."""
    text = _CITE.sub("", answer)
    return [s.strip() for s in _SENT.split(text) if len(tokenize(s)) >= 2]


def lexical_faithfulness(embedder: Embedder, answer: str, contexts: list[str]) -> float | None:
    """Share of claims whose content words are mostly in the context, or whose embedding is close to a passage."""
    parts = claims(answer)
    if not parts or not contexts:
        return None
    context_tokens = set(tokenize(" ".join(contexts)))
    claim_vecs = embedder.embed(parts)
    ctx_vecs = embedder.embed(contexts)
    best = (claim_vecs @ ctx_vecs.T).max(axis=1)
    supported = 0
    for claim, sim in zip(parts, best, strict=True):
        words = tokenize(claim)
        overlap = sum(1 for w in words if w in context_tokens) / len(words)
        supported += 1 if overlap >= 0.6 or sim >= 0.7 else 0
    return supported / len(parts)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between an answer and a reference answer."""
    pred, ref = tokenize(prediction), tokenize(reference)
    common = sum(min(pred.count(t), ref.count(t)) for t in set(pred))
    if not pred or not ref or not common:
        return 0.0
    precision, recall_ = common / len(pred), common / len(ref)
    return 2 * precision * recall_ / (precision + recall_)


def _answered(sample: AnswerSample) -> bool:
    return bool(sample.answer) and not sample.not_found


def faithfulness_lexical(sample: AnswerSample) -> float | None:
    """Judge-free faithfulness: share of the answer's claims the passages support (words or embedding)."""
    return lexical_faithfulness(sample.embedder, sample.answer, sample.contexts) if _answered(sample) else None


def answer_relevance(sample: AnswerSample) -> float | None:
    """Cosine similarity of the question and the answer (MiniLM embeddings)."""
    if not _answered(sample):
        return None
    vecs = sample.embedder.embed([sample.question, sample.answer])
    return float(vecs[0] @ vecs[1])


def answer_f1(sample: AnswerSample) -> float | None:
    """Token F1 against the reference answer, when the question has one."""
    return token_f1(sample.answer, sample.reference) if sample.reference and sample.answer else None


def groundedness(sample: AnswerSample) -> float | None:
    """The answer's own attribution: share of its claims a cited passage supports."""
    return sample.groundedness


# Name -> function. A retrieval name ends in `@k` (one value per requested k) or `@<number>` (that cutoff).
RETRIEVAL_METRICS: dict[str, RetrievalMetric] = {
    "recall@k": recall,
    "hit@k": hit,
    "mrr@10": mrr,
    "ndcg@10": ndcg,
}
ANSWER_METRICS: dict[str, AnswerMetric] = {
    "faithfulness_lexical": faithfulness_lexical,
    "answer_relevance": answer_relevance,
    "answer_f1": answer_f1,
    "groundedness": groundedness,
}
Kind = Literal["retrieval", "answer"]
# Every metric's name and kind (the docs' table is compared with it).
METRICS: dict[str, Kind] = {
    **{name: "retrieval" for name in RETRIEVAL_METRICS},
    **{name: "answer" for name in ANSWER_METRICS},
}


def score_retrieval(ranked: Sequence[str], gold: set[str], ks: Sequence[int]) -> dict[str, float]:
    """Every retrieval metric of one ranked list: the `@k` ones for each k (in k order), then the fixed ones."""
    out: dict[str, float] = {}
    for k in ks:
        for name, metric in RETRIEVAL_METRICS.items():
            if name.endswith("@k"):
                out[f"{name[:-2]}@{k}"] = metric(ranked, gold, k)
    for name, metric in RETRIEVAL_METRICS.items():
        if not name.endswith("@k"):
            out[name] = metric(ranked, gold, int(name.rsplit("@", 1)[1]))
    return out


def score_answer(sample: AnswerSample) -> dict[str, float | None]:
    """Every answer metric of one answer."""
    return {name: metric(sample) for name, metric in ANSWER_METRICS.items()}
