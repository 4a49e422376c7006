"""Compare two chunking settings by retrieval quality on a fixed corpus (the services' READMEs).

    .venv/bin/python exercises/03-rag-chunking/compare_chunking.py exercises/03-rag-chunking/work/chunking.yaml

Chunks the corpus with the rag service's own chunker (`services/rag/chunking.py`) and embedder
(all-MiniLM-L6-v2, offline), once with the baseline settings (the service's defaults, 256/32) and once with
yours, ranks chunks by cosine similarity for each question and reports hit@1, hit@3 and MRR@10 (a hit = the
chunk contains the question's gold phrase). Writes both runs to `runs.json` next to your config;
`--mlflow` also logs them to MLflow (experiment `rag-chunking`) for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
BASELINE = {"size": 256, "overlap": 32}
MAX_SIZE = 254  # the embedder reads 256 word pieces including [CLS] and [SEP]


def load_config(path: Path) -> dict[str, int]:
    """{"size", "overlap"} from a YAML file, validated."""
    doc = yaml.safe_load(path.read_text()) or {}
    size, overlap = int(doc["size"]), int(doc["overlap"])
    if not 16 <= size <= 1024 or not 0 <= overlap < size:
        raise ValueError(f"need 16 <= size <= 1024 and 0 <= overlap < size, got {size}/{overlap}")
    return {"size": size, "overlap": overlap}


def run(embedder: Any, config: dict[str, int]) -> dict[str, Any]:
    """Chunk, embed, retrieve; the metrics of one setting."""
    import numpy as np

    from services.rag.chunking import chunk_text

    size = min(config["size"], MAX_SIZE)  # what the rag service does too (RAG_CHUNK_SIZE is clamped)
    chunks = [
        c.text
        for doc in sorted((HERE / "data" / "corpus").glob("*.md"))
        for c in chunk_text(doc.read_text(), embedder.count_tokens, size, min(config["overlap"], size - 1))
    ]
    questions = [json.loads(x) for x in (HERE / "data" / "questions.jsonl").read_text().splitlines() if x.strip()]
    vectors = embedder.embed(chunks)
    queries = embedder.embed([q["question"] for q in questions])
    hits1 = hits3 = rr = 0.0
    for q, qv in zip(questions, queries, strict=True):
        order = np.argsort(-(vectors @ qv))[:10]
        ranks = [i for i, idx in enumerate(order) if q["gold"].lower() in chunks[idx].lower()]
        if ranks:
            hits1 += ranks[0] == 0
            hits3 += ranks[0] < 3
            rr += 1 / (ranks[0] + 1)
    n = len(questions)
    return {
        "config": config,
        "effective_size": size,
        "chunks": len(chunks),
        "hit@1": round(hits1 / n, 4),
        "hit@3": round(hits3 / n, 4),
        "mrr@10": round(rr / n, 4),
    }


def compare(config: dict[str, int]) -> dict[str, Any]:
    """Baseline and candidate runs with one embedder load."""
    from services.rag.embedder import Embedder

    embedder = Embedder()
    return {
        "corpus": "exercises/03-rag-chunking/data",
        "embedder": embedder.model_version,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "baseline": run(embedder, BASELINE),
        "candidate": run(embedder, config),
    }


def log_to_mlflow(result: dict[str, Any], tracking_uri: str) -> None:
    """Two MLflow runs (baseline, candidate) in the experiment `rag-chunking`."""
    import mlflow

    sys.path.insert(0, str(REPO / "exercises"))
    from _checklib import mlflow_login

    mlflow_login()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("rag-chunking")
    for name in ("baseline", "candidate"):
        r = result[name]
        with mlflow.start_run(run_name=f"{name}-{r['config']['size']}-{r['config']['overlap']}"):
            mlflow.log_params({**r["config"], "effective_size": r["effective_size"], "chunks": r["chunks"]})
            mlflow.log_metrics({"hit_at_1": r["hit@1"], "hit_at_3": r["hit@3"], "mrr_at_10": r["mrr@10"]})


def main() -> None:
    """CLI."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, help="YAML with size and overlap")
    p.add_argument("--mlflow", action="store_true", help="log both runs to MLflow (LLMOPS_MLFLOW_URL)")
    args = p.parse_args()
    result = compare(load_config(args.config))
    (args.config.parent / "runs.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("baseline", "candidate"):
        print(name, json.dumps(result[name]))
    if args.mlflow:
        log_to_mlflow(result, os.environ.get("LLMOPS_MLFLOW_URL", "http://127.0.0.1:5000"))
        print("logged to MLflow experiment rag-chunking")


if __name__ == "__main__":
    main()
