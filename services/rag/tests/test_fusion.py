"""Fusion, MMR over the fused relevance, and top_k counted in documents (issue 16): real embedder, Qdrant local mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.rag.catalog import Catalog
from services.rag.embedder import Embedder
from services.rag.fusion import RRF_K, mmr, rrf
from services.rag.ingest import IngestionPipeline, Progress, RawDocument
from services.rag.retrieval import Retriever
from services.rag.sparse import BM25Encoder
from services.rag.store import Strategy, VectorStore
from services.rag.tests.test_api import ingest, new_collection

DEV = Path(__file__).resolve().parents[3] / "bench" / "data" / "rag_dev"
QUESTIONS = [json.loads(line) for line in (DEV / "answerable.jsonl").read_text().splitlines()[:12]]
# One long document whose every chunk is about cats: with top_k counting chunks it fills the top.
LONG_CATS = "\n\n".join(
    f"Cats, part {i}. Cats are small carnivorous mammals; cats purr, cats hunt mice and cats sleep {i + 10} hours."
    for i in range(30)
)
SHORT = {
    "lions": "Lions are big cats that live in prides on the African savanna.",
    "tigers": "Tigers are the largest wild cats and hunt alone at night.",
    "dogs": "Dogs bark at the postman and fetch sticks in the park.",
}


def test_rrf_is_the_textbook_formula() -> None:
    fused = rrf([["a", "b"], ["b", "c"]])
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert fused[1][1] == pytest.approx(1 / (RRF_K + 1))


def test_mmr_demotes_near_duplicates_and_keeps_relevance_order_at_zero_diversity() -> None:
    a = np.array([1.0, 0.0, 0.0])
    near_a = np.array([0.99, 0.141, 0.0]) / np.linalg.norm([0.99, 0.141, 0.0])
    b = np.array([0.0, 0.0, 1.0])
    vectors = np.stack([a, near_a, b])
    assert mmr([0.030, 0.029, 0.020], vectors, 3, 0.0) == [0, 1, 2]
    assert mmr([0.030, 0.029, 0.020], vectors, 3, 0.5) == [0, 2, 1]  # the copy of the first waits
    assert mmr([0.5, 0.5], vectors[:2], 1, 0.5) == [0] and mmr([], vectors[:0], 3, 0.5) == []


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[Retriever, str]]:
    """The first 30 dev paragraphs, a long cats document in small chunks, and three short animal documents."""
    store = VectorStore(None, tmp_path_factory.mktemp("fusion") / "qdrant")
    store.ensure_catalog()
    catalog = Catalog(store, "public")
    record = catalog.create_collection("t", "fusion", "", embedder.dimension)
    pipeline = IngestionPipeline(
        embedder, BM25Encoder(), catalog, chunk_size=48, chunk_overlap=0, min_chars=1, max_chars=100_000
    )
    corpus = [json.loads(line) for line in (DEV / "corpus.jsonl").read_text().splitlines()[:30]]
    docs = [RawDocument(d["text"], d["id"], d["title"]) for d in corpus]
    docs += [RawDocument(LONG_CATS, "cats-long", "Cats")] + [RawDocument(t, i, i) for i, t in SHORT.items()]
    pipeline.run(record, docs, Progress())
    assert catalog.get_document("t", "fusion", "cats-long")["chunks"] >= 10  # type: ignore[index]
    yield Retriever(embedder, BM25Encoder(), store), record["qdrant_collection"]
    store.close()


def test_hybrid_is_plain_rrf_of_the_dense_and_sparse_lists(indexed: tuple[Retriever, str]) -> None:
    retriever, name = indexed
    for q in QUESTIONS:
        dense, sparse = retriever.embedder.embed_one(q["question"]), retriever.encoder.encode_query(q["question"])
        lists = [retriever.store.search(name, s, dense, sparse, 50, None, 50) for s in ("dense", "sparse")]
        want = rrf([[str(p.id) for p in points] for points in lists])[:10]
        got = retriever.store.search(name, "hybrid", dense, sparse, 10, None, 50)
        assert [str(p.id) for p in got] == [item for item, _ in want]
        assert [p.score for p in got] == pytest.approx([score for _, score in want], abs=1e-6)


def test_mmr_keeps_the_fused_relevance(indexed: tuple[Retriever, str]) -> None:
    retriever, name = indexed
    for q in QUESTIONS:
        plain = retriever.retrieve(name, q["question"], strategy="hybrid", top_k=5)
        # Diversity 0 is relevance alone: the fused order, not the dense cosine's (Qdrant's MMR gave the latter).
        same = retriever.retrieve(name, q["question"], strategy="hybrid", top_k=5, mmr_diversity=0.0)
        assert [p.chunk_id for p in same.passages] == [p.chunk_id for p in plain.passages]
        diverse = retriever.retrieve(name, q["question"], strategy="hybrid", top_k=5, mmr_diversity=0.5)
        assert diverse.passages[0].chunk_id == plain.passages[0].chunk_id and len(diverse.passages) == 5


def test_mmr_spreads_over_documents(indexed: tuple[Retriever, str]) -> None:
    retriever, name = indexed
    plain = retriever.retrieve(name, "cats purr and hunt mice", strategy="hybrid", top_k=4)
    diverse = retriever.retrieve(name, "cats purr and hunt mice", strategy="hybrid", top_k=4, mmr_diversity=0.7)
    assert len({p.doc_id for p in diverse.passages}) > len({p.doc_id for p in plain.passages})


@pytest.mark.parametrize("strategy", ["dense", "sparse", "hybrid"])
def test_top_k_counts_documents_with_group_by_document(indexed: tuple[Retriever, str], strategy: Strategy) -> None:
    retriever, name = indexed
    chunks = retriever.retrieve(name, "cats purr and hunt mice", strategy=strategy, top_k=3)
    assert [p.doc_id for p in chunks.passages].count("cats-long") >= 2
    # candidates=5: the first 15 chunks are all the long document's; the retriever looks deeper to find three.
    docs = retriever.retrieve(
        name, "cats purr and hunt mice", strategy=strategy, top_k=3, group_by="document", candidates=5
    )
    ids = [p.doc_id for p in docs.passages]
    assert len(ids) == 3 == len(set(ids)) and ids[0] == "cats-long"
    assert docs.passages[0].chunk_id == chunks.passages[0].chunk_id  # each document by its best chunk
    assert set(ids[1:]) <= {"lions", "tigers", "dogs"} and "lions" in ids


def test_group_by_over_http(team_a: httpx.Client) -> None:
    name = new_collection(team_a)
    long_text = "\n\n".join(LONG_CATS.split("\n\n") * 4)  # several chunks at the service's 254-token chunks
    docs: list[dict[str, Any]] = [{"id": "cats-long", "title": "Cats", "text": long_text}]
    ingest(team_a, name, docs + [{"id": i, "text": t} for i, t in SHORT.items()])
    url = f"/v1/collections/{name}/query"
    body = {"query": "cats purr and hunt mice", "top_k": 2}
    by_chunk = team_a.post(url, json=body).json()
    assert by_chunk["group_by"] == "chunk" and [p["document_id"] for p in by_chunk["passages"]] == ["cats-long"] * 2
    by_doc = team_a.post(url, json=body | {"group_by": "document"}).json()
    assert by_doc["group_by"] == "document" and len({p["document_id"] for p in by_doc["passages"]}) == 2
    assert team_a.post(url, json=body | {"group_by": "page"}).status_code == 400
