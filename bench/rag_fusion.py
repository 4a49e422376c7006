"""Retrieval quality per strategy beside BM25 and plain-RRF baselines computed in the same run, on the dev fixtures.

    .venv/bin/python bench/rag_fusion.py

For each fixture (bench/data/rag_dev: 87 SQuAD 2.0 paragraphs and their answerable questions; bench/data/rag_xquad:
46 XQuAD articles of 3-4 chunks and 1,164 questions) the corpus is ingested with the service's own pipeline into a
fresh Qdrant local folder, then every question is retrieved at the document level (`group_by: "document"`, top 10)
with:

- the service's strategies: `dense`, `sparse`, `hybrid` (plain RRF, k = 60, inside Qdrant) and `hybrid+mmr`
  (MMR over the fused candidates, the fused score as relevance, diversity 0.5 = the API's default);
- what the service did before: `hybrid (qdrant k=2)` (Qdrant's default RRF constant) and `hybrid+mmr (qdrant, dense
  relevance)` (Qdrant's MMR, whose relevance is the dense cosine);
- baselines computed here, from the same lists: `rrf(dense, sparse)` = plain RRF (k = 60) of the service's dense and
  sparse top 50, in Python; `bm25s` = BM25 over whole documents by the `bm25s` library (its defaults: Lucene's
  formula, k1 = 1.5, b = 0.75, English stop words; requirements/dev.in); `rrf(dense, bm25s)` = plain RRF of the
  dense document ranking and bm25s's. The bench stops when bm25s is not installed.

Metrics (binary relevance, gold = the question's document): nDCG@10, recall@10, MRR@10, and the retrieval's p50
latency. Writes bench/results/rag_fusion.{json,md}.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

import numpy as np  # noqa: E402
from qdrant_client import models as qm  # noqa: E402

from bench.bm25_baseline import baseline  # noqa: E402
from services.rag.app import build_embedder, build_pipeline  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.evaluation import retrieval_metrics  # noqa: E402
from services.rag.fusion import RRF_K, rrf  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder, SparseVec  # noqa: E402
from services.rag.store import Strategy, VectorStore  # noqa: E402

DATA = REPO / "bench" / "data"
OUT = REPO / "bench" / "results"
FIXTURES = {"rag_dev": "answerable.jsonl", "rag_xquad": "questions.jsonl"}
DEPTH = 50  # candidates per list, as the service's `candidates`
K = 10
METRICS = ("ndcg@10", "recall@10", "mrr@10")
K_SWEEP = (1, 2, 5, 10, 20, 30, 60, 100)  # RRF constants tried on the same dense and sparse lists (RAG_RRF_K)
SERVICE: list[tuple[str, Strategy, float | None]] = [
    ("dense", "dense", None),
    ("sparse", "sparse", None),
    ("hybrid", "hybrid", None),
    ("hybrid+mmr", "hybrid", 0.5),  # the API's default diversity
]


def load(path: Path) -> list[dict[str, Any]]:
    """One JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_per_doc(doc_ids: list[str]) -> list[str]:
    """Document ids in order of their first (best) chunk."""
    return list(dict.fromkeys(doc_ids))


def doc_id(point: Any) -> str:
    """The document a chunk point belongs to."""
    return str((point.payload or {})["doc_id"])


def legacy_search(
    store: VectorStore, name: str, dense: np.ndarray, sparse: SparseVec, mmr: bool, limit: int = DEPTH
) -> list[Any]:
    """The service's hybrid before this change: Qdrant's RRF with its default constant (2); with MMR, Qdrant's MMR
    over the fused candidates, whose relevance term is the cosine to the dense query."""
    sparse_q = qm.SparseVector(indices=sparse.indices, values=sparse.values)
    prefetch: Any = [
        qm.Prefetch(query=dense.tolist(), using="dense", limit=DEPTH),
        qm.Prefetch(query=sparse_q, using="sparse", limit=DEPTH),
    ]
    query: Any = qm.FusionQuery(fusion=qm.Fusion.RRF)
    if mmr:
        prefetch = qm.Prefetch(prefetch=prefetch, query=query, limit=DEPTH)
        query = qm.NearestQuery(nearest=dense.tolist(), mmr=qm.Mmr(diversity=0.5, candidates_limit=DEPTH))
    with store._call() as client:  # (a bench may reach past the wrapper to replay the old query)
        return list(
            client.query_points(
                name, query=query, using="dense" if mmr else None, prefetch=prefetch, limit=limit, with_payload=True
            ).points
        )


def run_fixture(name: str, settings: RagSettings, embedder: Any) -> dict[str, Any]:
    """Ingest one fixture and score every strategy and baseline on its questions."""
    corpus = load(DATA / name / "corpus.jsonl")
    questions = load(DATA / name / FIXTURES[name])
    bm25 = baseline([f"{d['title']}\n{d['text']}" for d in corpus])
    ids = [d["id"] for d in corpus]
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "qdrant")
        store.ensure_catalog()
        catalog = Catalog(store, "public")
        record = catalog.create_collection("bench", name.replace("_", "-"), "", embedder.dimension)
        pipeline = build_pipeline(settings, embedder, catalog)
        t0 = time.perf_counter()
        run = pipeline.run(record, [RawDocument(d["text"], d["id"], d["title"]) for d in corpus], Progress())
        ingest_s = time.perf_counter() - t0
        retriever = Retriever(embedder, BM25Encoder(), store)
        qname = record["qdrant_collection"]
        rows: dict[str, list[dict[str, float]]] = {}
        latency: dict[str, list[float]] = {}
        same_as_rrf, distinct = [], []
        sweep: dict[int, list[dict[str, float]]] = {}
        chunk_latency: dict[str, list[float]] = {}

        def score(label: str, ranked: list[str], gold: set[str], seconds: float | None = None) -> None:
            rows.setdefault(label, []).append(retrieval_metrics(ranked[:K], gold, [K]))
            if seconds is not None:
                latency.setdefault(label, []).append(seconds)

        for q in questions:
            text, gold = q["question"], set(q["gold_doc_ids"])
            # What a plain `/query` costs (top 5 chunks), with and without MMR, now and before; interleaved.
            for label, diversity in (("hybrid", None), ("hybrid+mmr", 0.5)):
                t = time.perf_counter()
                retriever.retrieve(qname, text, strategy="hybrid", top_k=5, mmr_diversity=diversity)
                chunk_latency.setdefault(label, []).append(time.perf_counter() - t)
            t = time.perf_counter()
            legacy_search(store, qname, embedder.embed_one(text), retriever.encoder.encode_query(text), True, 5)
            chunk_latency.setdefault("hybrid+mmr before (qdrant's mmr)", []).append(time.perf_counter() - t)
            service: dict[str, list[str]] = {}
            for label, strategy, diversity in SERVICE:
                result = retriever.retrieve(
                    qname, text, strategy=strategy, top_k=K, group_by="document", mmr_diversity=diversity
                )
                service[label] = [p.doc_id for p in result.passages]
                score(label, service[label], gold, result.latency_s)
            chunks = retriever.retrieve(qname, text, strategy="hybrid", top_k=K).passages
            distinct.append(len({p.doc_id for p in chunks}))
            dense_vec, sparse_vec = embedder.embed_one(text), retriever.encoder.encode_query(text)
            for label, mmr in (("hybrid (qdrant k=2)", False), ("hybrid+mmr (qdrant, dense relevance)", True)):
                t = time.perf_counter()
                points = legacy_search(store, qname, dense_vec, sparse_vec, mmr)
                score(label, first_per_doc([doc_id(p) for p in points]), gold, time.perf_counter() - t)
            lists = [
                store.search(qname, strategy, dense_vec, sparse_vec, DEPTH, None, DEPTH)
                for strategy in ("dense", "sparse")
                if strategy == "dense" or sparse_vec.indices
            ]
            doc_of = {str(p.id): doc_id(p) for points in lists for p in points}
            fused = rrf([[str(p.id) for p in points] for points in lists], RRF_K)
            plain = first_per_doc([doc_of[c] for c, _ in fused])
            score(f"rrf(dense, sparse) k={RRF_K}", plain, gold)
            same_as_rrf.append(plain[:K] == service["hybrid"])
            for k in K_SWEEP:
                swept = first_per_doc([doc_of[c] for c, _ in rrf([[str(p.id) for p in points] for points in lists], k)])
                sweep.setdefault(k, []).append(retrieval_metrics(swept[:K], gold, [K]))
            bm25_docs = [ids[i] for i in bm25.top(text, DEPTH)]
            score("bm25s", bm25_docs, gold)
            dense_docs = first_per_doc([doc_id(p) for p in lists[0]])
            score(f"rrf(dense, bm25s) k={RRF_K}", [d for d, _ in rrf([dense_docs, bm25_docs], RRF_K)], gold)
        store.close()
    table = {}
    for label, metrics in rows.items():
        means = {m: round(float(np.mean([r[m] for r in metrics])), 4) for m in METRICS}
        if label in latency:
            means["p50_ms"] = round(float(np.median(latency[label])) * 1000, 2)
        table[label] = means
    return {
        "fixture": f"bench/data/{name}",
        "documents": len(corpus),
        "chunks": run["counts"]["chunks"],
        "questions": len(questions),
        "ingest_seconds": round(ingest_s, 2),
        "bm25": f"{bm25.name}, version {bm25.version}",
        "hybrid_equals_plain_rrf": round(float(np.mean(same_as_rrf)), 4),
        "distinct_documents_in_top10_chunks": round(float(np.mean(distinct)), 2),
        "strategies": table,
        "query_top5_p50_ms": {k: round(float(np.median(v)) * 1000, 2) for k, v in chunk_latency.items()},
        "rrf_k_sweep": {k: {m: round(float(np.mean([r[m] for r in v])), 4) for m in METRICS} for k, v in sweep.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    """The bench table, one per fixture."""
    lines = [
        "# RAG retrieval: strategies beside BM25 and plain RRF (document level, top 10)",
        "",
        f"Machine: {report['machine']}. Script: `bench/rag_fusion.py`. RRF: `1 / ({RRF_K} + rank)` summed over the "
        f"lists, each list the top {DEPTH}. MMR diversity 0.5. Latency: one retrieval including the query embedding "
        "(the legacy rows exclude it).",
    ]
    for f in report["fixtures"]:
        lines += [
            "",
            f"## {f['fixture']}: {f['documents']} documents, {f['chunks']} chunks, {f['questions']} questions",
            "",
            f"Ingest {f['ingest_seconds']} s. BM25: {f['bm25']}. The service's hybrid ranks exactly as the plain RRF "
            f"computed here for {f['hybrid_equals_plain_rrf']:.0%} of questions. Ten hybrid chunks "
            f"(`group_by: chunk`) hold {f['distinct_documents_in_top10_chunks']} distinct documents on average.",
            "",
            "| strategy | nDCG@10 | recall@10 | MRR@10 | p50 ms |",
            "|---|---|---|---|---|",
        ]
        for label, m in f["strategies"].items():
            p50 = m.get("p50_ms", "")
            lines.append(f"| {label} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | {p50} |")
        lines += [
            "",
            "p50 of a `/query`-sized retrieval (top 5 chunks, embedding included), interleaved: "
            + ", ".join(f"{k} {v} ms" for k, v in f["query_top5_p50_ms"].items())
            + ".",
        ]
        lines += ["", "RRF constant k (`RAG_RRF_K`, default 60) on the same dense and sparse lists:", ""]
        sweep = f["rrf_k_sweep"]
        lines += ["| | " + " | ".join(f"k={k}" for k in sweep) + " |", "|---|" + "---|" * len(sweep)]
        for m in METRICS:
            lines.append(f"| {m} | " + " | ".join(f"{v[m]:.4f}" for v in sweep.values()) + " |")
    return "\n".join(lines) + "\n"


def main(names: list[str] | None = None) -> dict[str, Any]:
    """Run every fixture (or those named), write the results."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        settings = RagSettings(data_dir=tmp, qdrant_url=None, log_json=False)
        embedder = build_embedder(settings)
        fixtures = [run_fixture(name, settings, embedder) for name in (names or list(FIXTURES))]
        workers = embedder.workers
    report = {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, embedder: {workers} ONNX "
        f"Runtime session(s) of 1 thread; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{load_before} before, {[round(x, 2) for x in os.getloadavg()]} after (shared machine)",
        "fixtures": fixtures,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rag_fusion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (OUT / "rag_fusion.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:] or None)
