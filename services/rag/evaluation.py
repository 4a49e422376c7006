"""Evaluation: retrieval metrics (recall@k, hit rate, MRR@10, nDCG@10) and answer quality, per question.

Answer quality has two faithfulness measures: an LLM judge through the gateway, and a judge-free one
(each answer sentence counts as supported when its content words or its embedding match the context).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.rag.answer import AnswerService
from services.rag.eval_metrics import AnswerSample, claims, score_answer, score_retrieval, token_f1
from services.rag.gateway import PASSED_ON, Caller, GatewayClient, GatewayRefused, GatewayUnavailable
from services.rag.prompts import PromptTemplate
from services.rag.retrieval import Retriever
from services.rag.store import Strategy

__all__ = ["Evaluator", "claims", "mean", "parse_fraction", "ranked_ids", "retrieval_metrics", "token_f1"]


def ranked_ids(passages: Sequence[Any], level: str) -> list[str]:
    """Unique ids in rank order: documents (first chunk of each wins) or chunks."""
    out: list[str] = []
    for p in passages:
        key = p.doc_id if level == "document" else p.chunk_id
        if key not in out:
            out.append(key)
    return out


def retrieval_metrics(ranked: list[str], gold: set[str], ks: Sequence[int]) -> dict[str, float]:
    """Binary-relevance metrics of one ranked list (every metric registered in eval_metrics.METRICS)."""
    return score_retrieval(ranked, gold, ks)


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Average every metric over the questions."""
    keys = rows[0].keys() if rows else []
    return {
        k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 4)
        for k in keys
        if any(r.get(k) is not None for r in rows)
    }


def parse_fraction(text: str) -> float | None:
    """First number in [0, 1] in a judge's reply (percentages accepted)."""
    for match in re.findall(r"\d+(?:\.\d+)?%?", text):
        value = float(match.rstrip("%")) / (100 if match.endswith("%") else 1)
        if 0 <= value <= 1:
            return value
    return None


class Evaluator:
    """Runs retrieval evals synchronously (a worker thread) and answer evals through the gateway."""

    def __init__(
        self,
        retriever: Retriever,
        answers: AnswerService,
        gateway: GatewayClient,
        judge: PromptTemplate,
        judge_model: str,
    ) -> None:
        self.retriever = retriever
        self.answers = answers
        self.gateway = gateway
        self.judge = judge
        self.judge_model = judge_model

    def retrieval(
        self,
        qdrant_collection: str,
        questions: list[dict[str, Any]],
        strategy: Strategy,
        ks: Sequence[int],
        candidates: int = 50,
    ) -> dict[str, Any]:
        """Per-question and mean retrieval metrics of one strategy."""
        rows, per_question = [], []
        depth = max(10, *ks)
        for q in questions:
            level = "chunk" if q.get("gold_chunk_ids") else "document"
            gold = set(q.get("gold_chunk_ids") or q.get("gold_doc_ids") or [])
            # Document-level gold: top `depth` distinct documents (several chunks of one document count once).
            result = self.retriever.retrieve(
                qdrant_collection,
                q["question"],
                strategy=strategy,
                top_k=depth,
                candidates=candidates,
                group_by="document" if level == "document" else "chunk",
            )
            ranked = ranked_ids(result.passages, level)
            metrics = retrieval_metrics(ranked, gold, ks)
            rows.append(metrics)
            per_question.append(
                {
                    "id": q.get("id"),
                    "question": q["question"],
                    "gold": sorted(gold),
                    "retrieved": ranked[:10],
                    "latency_ms": round(result.latency_s * 1000, 2),
                    **metrics,
                }
            )
        return {"strategy": strategy, "metrics": mean(rows), "questions": per_question}

    async def answer_quality(
        self,
        caller: Caller,
        qdrant_collection: str,
        questions: list[dict[str, Any]],
        strategy: Strategy,
        top_k: int,
        threshold: float | None,
        use_judge: bool,
        data_version: str | None,
    ) -> dict[str, Any]:
        """Answer each question, then score faithfulness (judge + judge-free) and relevance."""
        import asyncio

        rows, per_question = [], []
        embedder = self.retriever.embedder
        for q in questions:
            result = await asyncio.to_thread(
                self.retriever.retrieve,
                qdrant_collection,
                q["question"],
                strategy=strategy,
                top_k=top_k,
                score_threshold=threshold,
            )
            if not result.passages:
                out = self.answers.not_found([], data_version)
            else:
                out = await self.answers.answer(caller, q["question"], result.passages, data_version)
            answer = out.get("answer") or ""
            contexts = [p["text"] for p in out["passages"]]
            sample = AnswerSample(
                question=q["question"],
                answer=answer,
                not_found=bool(out.get("not_found")),
                contexts=contexts,
                reference=q.get("reference_answer"),
                groundedness=out.get("groundedness"),
                embedder=embedder,
            )
            row: dict[str, Any] = await asyncio.to_thread(score_answer, sample)
            row["faithfulness_judge"] = None
            if use_judge and answer and not out.get("not_found"):
                row["faithfulness_judge"] = await self._judge(caller, answer, "\n\n".join(contexts))
            rows.append(row)
            per_question.append(
                {
                    "id": q.get("id"),
                    "question": q["question"],
                    "answer": out.get("answer"),
                    "prompt_version": out.get("prompt_version"),
                    "not_found": out.get("not_found"),
                    "degraded": out.get("degraded"),
                    **row,
                }
            )
        # A promotion during a long eval shows up here as two versions, rather than being hidden.
        versions = sorted({q["prompt_version"] for q in per_question if q["prompt_version"]})
        return {"metrics": mean(rows), "prompt_versions": versions, "questions": per_question}

    async def _judge(self, caller: Caller, answer: str, context: str) -> float | None:
        payload = {
            "model": self.judge_model,
            "temperature": 0,
            "max_tokens": 8,
            "messages": self.judge.messages(context=context[:3000], answer=answer),
        }
        try:
            body, _ = await self.gateway.chat(caller.key, payload)
        except GatewayUnavailable:
            return None
        except GatewayRefused as exc:
            if exc.status in PASSED_ON:
                raise  # the caller's key is out of rate, budget or models: that is the eval's answer too
            return None
        return parse_fraction(((body.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
