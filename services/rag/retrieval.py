"""Retrieval: embed the query, search Qdrant with the chosen strategy, attach a cosine relevance, threshold.

The threshold always applies to `relevance`, the cosine between query and passage: BM25 and RRF scores
are not calibrated across queries, so they cannot tell "nothing relevant" apart from "weak match".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.rag.embedder import Embedder
from services.rag.fusion import RRF_K, mmr
from services.rag.sparse import BM25Encoder
from services.rag.store import Strategy, VectorStore, build_filter


@dataclass
class Passage:
    """One retrieved chunk with its scores."""

    chunk_id: str
    doc_id: str
    title: str
    section: str
    text: str
    score: float
    relevance: float
    metadata: dict[str, Any]
    fenced: bool = False  # flagged by the content check: quoted in the prompt as material, not instructions

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return ({"fenced": True} if self.fenced else {}) | {
            "chunk_id": self.chunk_id,
            "document_id": self.doc_id,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "score": round(self.score, 6),
            "relevance": round(self.relevance, 6),
            "metadata": self.metadata,
        }


@dataclass
class RetrievalResult:
    """Passages above the threshold, how many were dropped by it, and the time spent."""

    passages: list[Passage]
    below_threshold: int
    latency_s: float


GroupBy = Literal["chunk", "document"]
MAX_GROUP_DEPTH = 1000  # chunks looked at, at most, to find top_k distinct documents


def best_per_document(points: list[Any]) -> list[Any]:
    """The first (best ranked) chunk of each document, in rank order."""
    seen: set[str] = set()
    out = []
    for point in points:
        doc = (point.payload or {}).get("doc_id", "")
        if doc not in seen:
            seen.add(doc)
            out.append(point)
    return out


class Retriever:
    """Stateless over its collaborators; safe to call from many threads."""

    def __init__(self, embedder: Embedder, encoder: BM25Encoder, store: VectorStore, rrf_k: int = RRF_K) -> None:
        self.embedder = embedder
        self.encoder = encoder
        self.store = store
        self.rrf_k = rrf_k

    def retrieve(
        self,
        qdrant_collection: str,
        query: str,
        *,
        strategy: Strategy = "hybrid",
        top_k: int = 5,
        filters: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        mmr_diversity: float | None = None,
        candidates: int = 50,
        group_by: GroupBy = "chunk",
    ) -> RetrievalResult:
        """Run one retrieval; raises StoreUnavailable when Qdrant fails.

        `group_by="document"`: top_k counts documents, each represented by its best chunk. With MMR, the
        strategy's top `candidates` (fused for hybrid) are re-ranked with their own score as the relevance term."""
        started = time.perf_counter()
        dense = self.embedder.embed_one(query)
        sparse = self.encoder.encode_query(query)
        if strategy == "sparse" and not sparse.indices:
            return RetrievalResult([], 0, time.perf_counter() - started)
        flt = build_filter(filters)
        depth = top_k if mmr_diversity is None else max(candidates, top_k)
        if group_by == "document":
            depth = max(depth, candidates, 5 * top_k)
        while True:
            points = self.store.search(qdrant_collection, strategy, dense, sparse, depth, flt, candidates, self.rrf_k)
            if group_by == "chunk":
                break
            grouped = best_per_document(points)
            if len(grouped) >= top_k or len(points) < depth or depth >= MAX_GROUP_DEPTH:
                points = grouped
                break
            depth = min(MAX_GROUP_DEPTH, depth * 4)  # long documents crowd the top: look deeper
        vectors = [_dense_of(p) for p in points]
        rows = [v for v in vectors if v is not None]
        if mmr_diversity is not None and points and len(rows) == len(points):
            order = mmr([p.score for p in points], np.stack(rows), top_k, mmr_diversity)
            points, vectors = [points[i] for i in order], [vectors[i] for i in order]
        passages: list[Passage] = []
        dropped = 0
        for point, vec in zip(points[:top_k], vectors[:top_k], strict=True):
            relevance = float(np.dot(dense, vec)) if vec is not None else point.score
            if score_threshold is not None and relevance < score_threshold:
                dropped += 1
                continue
            payload = point.payload or {}
            passages.append(
                Passage(
                    chunk_id=str(point.id),
                    doc_id=payload.get("doc_id", ""),
                    title=payload.get("title", ""),
                    section=payload.get("section", ""),
                    text=payload.get("text", ""),
                    score=float(point.score),
                    relevance=relevance,
                    metadata=payload.get("meta") or {},
                )
            )
        return RetrievalResult(passages, dropped, time.perf_counter() - started)


def _dense_of(point: Any) -> np.ndarray | None:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    vec = vectors.get("dense")
    return np.asarray(vec, dtype=np.float32) if vec is not None else None
