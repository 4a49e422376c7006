"""Retrieval: embed the query, search Qdrant with the chosen strategy, attach a cosine relevance, threshold.

The threshold always applies to `relevance`, the cosine between query and passage: BM25 and RRF scores
are not calibrated across queries, so they cannot tell "nothing relevant" apart from "weak match".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.rag.embedder import Embedder
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


class Retriever:
    """Stateless over its collaborators; safe to call from many threads."""

    def __init__(self, embedder: Embedder, encoder: BM25Encoder, store: VectorStore) -> None:
        self.embedder = embedder
        self.encoder = encoder
        self.store = store

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
    ) -> RetrievalResult:
        """Run one retrieval; raises StoreUnavailable when Qdrant fails."""
        started = time.perf_counter()
        dense = self.embedder.embed_one(query)
        sparse = self.encoder.encode_query(query)
        if strategy == "sparse" and not sparse.indices and mmr_diversity is None:
            return RetrievalResult([], 0, time.perf_counter() - started)
        points = self.store.search(
            qdrant_collection, strategy, dense, sparse, top_k, build_filter(filters), mmr_diversity, candidates
        )
        passages: list[Passage] = []
        dropped = 0
        for point in points:
            vectors = point.vector if isinstance(point.vector, dict) else {}
            vec = vectors.get("dense")
            relevance = float(np.dot(dense, np.asarray(vec, dtype=np.float32))) if vec is not None else point.score
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
