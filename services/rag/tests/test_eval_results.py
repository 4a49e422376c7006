"""The committed SQuAD evaluation exists and shows what the issue asks: hybrid beats dense."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "eval_results" / "squad_small.json"


def test_committed_squad_eval_has_all_strategies_and_hybrid_wins() -> None:
    report = json.loads(RESULTS.read_text())
    metrics = report["metrics"]
    assert set(metrics) == {"dense", "sparse", "hybrid"} and report["questions"] == 293
    for name in ("recall@5", "ndcg@10"):
        assert metrics["hybrid"][name] > metrics["dense"][name]
    assert report["ingest"]["params"]["embedding_model"] == "all-MiniLM-L6-v2"
    assert len(report["per_question"]["hybrid"]) == report["questions"]
