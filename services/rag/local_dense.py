"""Dense scoring for Qdrant's local mode in float32, as a Qdrant server scores.

qdrant-client's local mode keeps the dense vectors as one float32 matrix but turns every query into a float64
vector, so numpy converts the whole matrix to float64 on every search before the dot product: ~20 ms per query for
10,000 chunks of 384 dimensions on the shared 2-core machine, against ~1.8 ms for the float32 product
(docs/performance.md, "RAG retrieval at 10,000 real chunks"). This module wraps local mode's `calculate_distance`
so that a 1-D query is cast to the matrix's dtype first; the scores are what a Qdrant server computes (it scores
in float32). Only installed for the qdrant-client version it was tested with; anything else keeps the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from services.rag.local_patch import replace_local_function

log = logging.getLogger("rag.local_dense")


class Float32Distance:
    """local_collection.calculate_distance with the query cast to the stored vectors' dtype."""

    def __init__(self, original: Callable[..., Any]) -> None:
        self.original = original

    def __call__(self, query: np.ndarray, vectors: np.ndarray, distance_type: Any) -> Any:
        if query.ndim == 1 and vectors.dtype == np.float32 and query.dtype != np.float32:
            query = query.astype(np.float32)
        return self.original(query, vectors, distance_type)


def install() -> bool:
    """Score dense queries in float32 in qdrant-client's local mode; False when this qdrant-client is untested."""
    return replace_local_function("calculate_distance", Float32Distance, log, "local-mode dense scoring")
