"""Local mode's dense scoring in float32 (services/rag/local_dense.py): the same hits and scores (to float32
rounding) as qdrant-client's own float64 path, and the query really reaches numpy as float32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.local import distances, local_collection

from services.rag import local_dense
from services.rag.local_dense import Float32Distance


def _search(tmp: Path, queries: np.ndarray, vectors: np.ndarray) -> list[list[tuple[int, float]]]:
    client = QdrantClient(path=str(tmp))
    client.create_collection(
        "c", vectors_config={"dense": qm.VectorParams(size=vectors.shape[1], distance=qm.Distance.DOT)}
    )
    client.upsert("c", [qm.PointStruct(id=i, vector={"dense": v.tolist()}) for i, v in enumerate(vectors)])
    client.delete("c", points_selector=qm.PointIdsList(points=[0, 1]))  # deleted points must stay out
    out = [
        [(p.id, p.score) for p in client.query_points("c", query=q.tolist(), using="dense", limit=10).points]
        for q in queries
    ]
    client.close()
    return out


def test_hits_and_scores_match_the_float64_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(600, 10)] + rng.normal(0, 0.1, (10, 32)).astype(np.float32)
    monkeypatch.setattr(local_collection, "calculate_distance", distances.calculate_distance)
    want = _search(tmp_path / "a", queries, vectors)
    seen: list[Any] = []

    def spy(query: np.ndarray, matrix: np.ndarray, distance_type: Any) -> Any:
        seen.append((query.dtype, matrix.dtype))
        return distances.calculate_distance(query, matrix, distance_type)

    monkeypatch.setattr(local_collection, "calculate_distance", spy)
    assert local_dense.install()
    assert isinstance(local_collection.calculate_distance, Float32Distance)
    got = _search(tmp_path / "b", queries, vectors)
    assert seen and all(q == np.float32 and m == np.float32 for q, m in seen)  # no float64 conversion left
    for hits, expected in zip(got, want, strict=True):
        assert [i for i, _ in hits] == [i for i, _ in expected]
        assert np.allclose([s for _, s in hits], [s for _, s in expected], atol=1e-5)


def test_install_refuses_an_untested_qdrant_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import qdrant_client

    monkeypatch.setattr(local_collection, "calculate_distance", distances.calculate_distance)
    monkeypatch.setattr(qdrant_client, "__version__", "9.9.9", raising=False)
    assert local_dense.install() is False
    assert local_collection.calculate_distance is distances.calculate_distance
