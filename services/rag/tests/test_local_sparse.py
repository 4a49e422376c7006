"""The inverted-index scorer gives local mode the same sparse and hybrid results as qdrant-client's own loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.local import local_collection
from qdrant_client.local.sparse_distances import calculate_distance_sparse as original

from services.rag import local_sparse
from services.rag.local_sparse import InvertedSparseScorer


def _random_vectors(rng: np.random.Generator, n: int, vocab: int = 2000) -> list[qm.SparseVector]:
    out = []
    for _ in range(n):
        size = int(rng.integers(0, 40))  # some vectors are empty
        idx = np.sort(rng.choice(vocab, size=size, replace=False)).tolist()
        out.append(qm.SparseVector(indices=idx, values=rng.random(size).round(4).tolist()))
    return out


@pytest.mark.parametrize("empty_is_zero", [False, True])
def test_scores_equal_the_original_loop(empty_is_zero: bool) -> None:
    rng = np.random.default_rng(7)
    vectors = _random_vectors(rng, 1500)
    scorer = InvertedSparseScorer(original)
    for _ in range(20):
        size = int(rng.integers(1, 8))
        query = qm.SparseVector(
            indices=np.sort(rng.choice(2000, size=size, replace=False)).tolist(), values=rng.random(size).tolist()
        )
        want = original(query, vectors, empty_is_zero=empty_is_zero)
        got = scorer(query, vectors, empty_is_zero=empty_is_zero)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(np.isinf(got), np.isinf(want))  # the same vectors count as "no overlap"
        finite = ~np.isinf(want)
        assert np.allclose(got[finite], want[finite], rtol=1e-6, atol=1e-7)


def test_index_follows_upserts_and_is_reused_otherwise() -> None:
    rng = np.random.default_rng(3)
    vectors = _random_vectors(rng, 600)
    scorer = InvertedSparseScorer(original)
    query = qm.SparseVector(indices=vectors[5].indices[:3], values=[1.0] * len(vectors[5].indices[:3]))
    scorer(query, vectors)
    scorer(query, vectors)
    assert scorer.rebuilds == 1  # unchanged list: one index
    vectors[5] = qm.SparseVector(indices=[1, 2, 3], values=[1.0, 1.0, 1.0])  # local mode replaces on upsert
    vectors.append(qm.SparseVector(indices=query.indices, values=[2.0] * len(query.indices)))
    got = scorer(query, vectors)
    assert scorer.rebuilds == 2
    assert np.allclose(got, original(query, vectors), equal_nan=True)


def _collection(path: Path, n: int, seed: int) -> tuple[QdrantClient, list[qm.SparseVector]]:
    rng = np.random.default_rng(seed)
    client = QdrantClient(path=str(path))
    client.create_collection(
        "c",
        vectors_config={"dense": qm.VectorParams(size=8, distance=qm.Distance.DOT)},
        sparse_vectors_config={"sparse": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
    )
    sparse = _random_vectors(rng, n, vocab=300)
    dense = rng.standard_normal((n, 8))
    client.upsert(
        "c",
        [
            qm.PointStruct(id=i, vector={"dense": dense[i].tolist(), "sparse": sparse[i]}, payload={"even": i % 2 == 0})
            for i in range(n)
        ],
    )
    return client, sparse


def _queries(client: QdrantClient, sparse: list[qm.SparseVector]) -> list[list[tuple[int | str, float]]]:
    results = []
    even = qm.Filter(must=[qm.FieldCondition(key="even", match=qm.MatchValue(value=True))])
    for i in (0, 17, 123):
        q = qm.SparseVector(indices=sparse[i].indices[:4], values=[1.0] * len(sparse[i].indices[:4]))
        for flt in (None, even):
            hits = client.query_points("c", query=q, using="sparse", limit=10, query_filter=flt).points
            results.append([(h.id, round(h.score, 4)) for h in hits])
        fused = client.query_points(
            "c",
            prefetch=[
                qm.Prefetch(query=[0.1] * 8, using="dense", limit=20),
                qm.Prefetch(query=q, using="sparse", limit=20),
            ],
            query=qm.FusionQuery(fusion=qm.Fusion.RRF),
            limit=10,
        ).points
        results.append([(h.id, round(h.score, 4)) for h in fused])
    return results


def test_query_points_agree_with_qdrant_clients_own_scoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_collection, "calculate_distance_sparse", original)
    client, sparse = _collection(tmp_path / "a", 800, seed=11)
    client.delete("c", points_selector=qm.PointIdsList(points=[1, 2, 3]))  # deleted points must stay out
    want = _queries(client, sparse)
    assert local_sparse.install()
    assert isinstance(local_collection.calculate_distance_sparse, InvertedSparseScorer)
    assert _queries(client, sparse) == want
    client.close()


def test_install_refuses_an_untested_qdrant_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import qdrant_client

    monkeypatch.setattr(local_collection, "calculate_distance_sparse", original)
    monkeypatch.setattr(qdrant_client, "__version__", "9.9.9", raising=False)
    assert local_sparse.install() is False
    assert local_collection.calculate_distance_sparse is original
