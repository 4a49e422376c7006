"""Register a trained injection artifact in the registry: data files as dataset versions, then a model version.

Through the registry's REST API only (it is the one writer of MLflow). Each data file becomes (or is found
as) a dataset version with its sha256, so the model version's `datasets` list is its lineage; the Enron
file is referenced with context `eval` (it is measured, never trained on).

Eval numbers posted with the version are only self-reported: an approval policy gates on metrics the registry
read from a platform evaluation run. With the guardrails evaluator's token (REGISTRY_EVALUATOR_TOKENS on the
registry, REGISTRY_EVALUATOR_TOKEN here) the numbers are recorded through `POST /v1/evaluations` and the
resulting run is attached to the version as its evidence.
"""

from __future__ import annotations

from typing import Any

from llmops_common.registry_client import RegistryClient
from services.guardrails.detectors.model_source import REGISTERED_MODEL

LICENSE = "model: Apache-2.0; data: MIT, Apache-2.0, BSD, PSF, CC-BY-3.0/4.0, CC-BY-SA-4.0 (see lineage)"


def _dataset_name(file: str) -> str:
    return "guardrails-" + file.replace("/", "-").rsplit(".", 1)[0].replace("_", "-")[:100]


def _dataset_version(
    registry: RegistryClient, file: str, info: dict[str, Any], source: str | None = None
) -> dict[str, Any]:
    """The registry's dataset version with this file's digest, created when missing."""
    body = {
        "digest": f"sha256:{info['sha256']}",
        "schema": {"text": "string", "label": "int"},
        "row_count": int(info.get("rows", 0)),
        "source": source or f"file://shared/datasets/{file}",
        "source_type": "local",
        "description": f"{file} ({info['use']}); source {info['source']}",
    }
    return registry.ensure_dataset_version(_dataset_name(file), body)


def register(
    registry: RegistryClient,
    artifact_uri: str,
    model_json_sha256: str,
    meta: dict[str, Any],
    eval_results: dict[str, float],
    evaluator_token: str | None = None,
) -> str:
    """Create the model version; returns its version string. Raises RegistryError on refusal.

    With `evaluator_token`, `eval_results` are also recorded as a platform evaluation run and attached to the
    version, so the production gate can count them."""
    datasets = []
    for file, info in meta["data"]["lineage"].items():
        ref = _dataset_version(registry, file, info)
        datasets.append({**ref, "context": "training" if info["use"].startswith("training") else "eval"})
    for key in ("package_docs", "system_docs"):  # the committed documentation snapshots
        docs = meta["data"].get(key)
        if not docs:
            continue
        info = {"sha256": docs["sha256"], "rows": docs["passages"], "source": docs["source"], "use": docs["use"]}
        source = f"repo://services/guardrails/data/{key}.jsonl.gz"  # per-package list: in the artifact
        ref = _dataset_version(registry, docs["source"], info, source)
        datasets.append({**ref, "context": "training"})
    body = {
        # The registry's formats and engines describe LLMs; the weights file *is* safetensors, and no
        # inference engine serves it ("openai" + not_served); the tags say what it really is.
        "format": "safetensors",
        "artifact_uri": artifact_uri,
        "engine": "openai",
        "engine_args": {"not_served": True, "consumer": "guardrails", "format": meta["format"]},
        "context_length": int(meta["features"]["window_chars"]),
        "license": LICENSE,
        "price_per_1m_input": 0.0,
        "price_per_1m_output": 0.0,
        "eval_results": eval_results,
        "datasets": datasets,
        "description": meta["kind"],
        "tags": {
            "kind": "guardrails-injection-detector",
            "model_json_sha256": model_json_sha256,
            "weights_sha256": meta["weights_sha256"],
            "threshold_input": f"{meta['modes']['input']['threshold']:.6f}",
            "threshold_content": f"{meta['modes']['content']['threshold']:.6f}",
            "trained_at": meta["trained_at"],
        },
    }
    version = registry.create_model_version(REGISTERED_MODEL, body)
    if evaluator_token and eval_results:
        attach_evaluation(registry, evaluator_token, version, eval_results)
    return version


def attach_evaluation(registry: RegistryClient, evaluator_token: str, version: str, metrics: dict[str, float]) -> str:
    """Record `metrics` as the guardrails evaluator's run (its own token, not the caller's) and attach the run
    to `version` with the caller's token; returns the run id."""
    run_id = registry.record_evaluation(REGISTERED_MODEL, version, metrics, {"evaluator": "loso"}, evaluator_token)
    registry.attach_evaluation(REGISTERED_MODEL, version, run_id)
    return run_id
