"""Retrieval evaluation of the RAG service on the shared SQuAD sample (dense, sparse, hybrid).

    .venv/bin/python bench/rag_eval_squad.py [--dataset ../shared/datasets/rag/small.json]

Each paragraph is one document (id `<article>#<n>`); each answerable question's gold document is its
paragraph. Runs the service's own pipeline and retriever in-process on a fresh Qdrant local folder and
writes services/rag/eval_results/squad_small.{json,md}. With RAG_MLFLOW_TRACKING_URI set, each strategy
is also logged as an MLflow run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from services.rag.app import build_embedder, build_pipeline  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.evaluation import Evaluator  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder  # noqa: E402
from services.rag.store import VectorStore  # noqa: E402
from services.rag.tracking import build_run_logger, flatten  # noqa: E402

OUT = REPO / "services" / "rag" / "eval_results"


def load_squad(path: Path) -> tuple[list[RawDocument], list[dict], int]:
    """Documents (paragraphs), answerable questions with gold doc ids, and the count of unanswerable ones."""
    data = json.loads(path.read_text(encoding="utf-8"))
    docs, questions, unanswerable = [], [], 0
    for article in data["data"]:
        for n, para in enumerate(article["paragraphs"]):
            doc_id = f"{article['title']}#{n}"
            docs.append(RawDocument(para["context"], doc_id, article["title"].replace("_", " ")))
            for qa in para["qas"]:
                if qa["is_impossible"]:
                    unanswerable += 1
                    continue
                questions.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "gold_doc_ids": [doc_id],
                        "reference_answer": qa["answers"][0]["text"],
                    }
                )
    return docs, questions, unanswerable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "rag" / "small.json")
    args = parser.parse_args()
    settings = RagSettings()
    docs, questions, unanswerable = load_squad(args.dataset)
    embedder = build_embedder(settings)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(None, Path(tmp) / "qdrant")
        store.ensure_catalog()
        catalog = Catalog(store, settings.public_team)
        record = catalog.create_collection("eval", "squad-small", "SQuAD sample", embedder.dimension)
        pipeline = build_pipeline(settings, embedder, catalog)
        run = pipeline.run(record, docs, Progress())
        evaluator = Evaluator(Retriever(embedder, BM25Encoder(), store), None, None, None, "")  # type: ignore[arg-type]
        ks = [1, 3, 5, 10]
        results = {
            s: evaluator.retrieval(record["qdrant_collection"], questions, s, ks) for s in ("dense", "sparse", "hybrid")
        }
        store.close()
    logger = build_run_logger(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    run_ids = {
        s: logger.log_run(
            f"eval-squad-small-{s}",
            flatten("", run["params"]) | {"strategy": s, "dataset": "squad-small", "data_version": run["data_version"]},
            r["metrics"],
            {"kind": "rag-eval"},
        )
        for s, r in results.items()
    }
    import onnxruntime
    import qdrant_client

    report = {
        "dataset": str(args.dataset.relative_to(REPO.parent))
        if args.dataset.is_relative_to(REPO.parent)
        else str(args.dataset),
        "documents": len(docs),
        "chunks": run["counts"]["chunks"],
        "questions": len(questions),
        "unanswerable_skipped": unanswerable,
        "gold": "the question's own paragraph (document level)",
        "ingest": {"params": run["params"], "data_version": run["data_version"], "input_hash": run["input_hash"]},
        "metrics": {s: r["metrics"] for s, r in results.items()},
        "hybrid_beats_dense": {
            m: results["hybrid"]["metrics"][m] > results["dense"]["metrics"][m] for m in ("recall@5", "ndcg@10")
        },
        "mlflow_run_ids": run_ids,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
        },
        "versions": {
            "qdrant-client": qdrant_client.__version__ if hasattr(qdrant_client, "__version__") else "1.20.0",
            "onnxruntime": onnxruntime.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "python bench/rag_eval_squad.py",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    per_question = {s: r["questions"] for s, r in results.items()}
    (OUT / "squad_small.json").write_text(json.dumps(report | {"per_question": per_question}, indent=1) + "\n")
    lines = [
        "# SQuAD sample: retrieval evaluation",
        "",
        f"{report['documents']} paragraphs as documents "
        f"({report['chunks']} chunks), {report['questions']} answerable questions; gold = the question's "
        f"paragraph. {report['date']}, `{report['command']}`.",
        "",
        "| strategy | recall@1 | recall@3 | recall@5 | recall@10 | MRR@10 | nDCG@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, r in results.items():
        m = r["metrics"]
        lines.append(
            f"| {s} | {m['recall@1']:.3f} | {m['recall@3']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} "
            f"| {m['mrr@10']:.3f} | {m['ndcg@10']:.3f} |"
        )
    lines += ["", f"Hybrid beats dense: {report['hybrid_beats_dense']}", ""]
    (OUT / "squad_small.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
