"""The tuned GGUF into the registry, through its REST API (the one writer of MLflow's model registry).

1. the training set is a dataset version: the one the feedback export registered (checked: same sha256), or a new
   version of `finetune-<file stem>` for a file made here; the regression set likewise, with context `eval`;
2. the model version: file:// artifact (under REGISTRY_FILE_ARTIFACT_ROOTS), Q4_1 base, lineage in its tags
   (training run id, base artifact, dataset digests) and `datasets` (shown in MLflow as "Datasets used");
3. the eval results as evidence: POST /v1/evaluations with a platform evaluator's token writes the run, which is
   then attached to the version, so the promotion policy counts them (posted numbers alone are "self-reported");
4. the gate (policy `finetune-gate`, created with an admin token when missing): regression perplexity at most
   5 % above the base's, task exact match above the base's. The seeded `production-gate` (eval_pass_rate >= 0.8)
   applies as well; four-eyes review is the registry's, unchanged.
"""

from __future__ import annotations

from typing import Any

from llmops_common.registry_client import RegistryClient, RegistryError

GATE_POLICY = "finetune-gate"
PPL_RATIO_MAX = 1.05
TASK_GAIN_MIN = 0.01  # "better": at least one point of exact match (a tie is not an improvement)


# The tag the registry derives for every version with training lineage (a `training` dataset, a training_run_id or
# base_artifact tag; registrants cannot set it): the gate covers those versions only, so a plain re-registration or
# a rollback to the base is gated by the platform's other policies, not by fine-tuning evidence it cannot have.
SCOPE = {"finetuned": "true"}


def gate_policy(name_pattern: str) -> dict[str, Any]:
    return {
        "object_type": "model",
        "name_pattern": name_pattern,
        "aliases": ["production"],
        "required_evals": {
            "finetune_regression_ppl_ratio": {"max": PPL_RATIO_MAX},
            "finetune_task_exact_gain": {"min": TASK_GAIN_MIN},
        },
        "version_tags": SCOPE,
    }


def ensure_gate(admin: RegistryClient, name_pattern: str) -> bool:
    """Create the finetune gate for `name_pattern` unless it exists (`admin`: a client with an admin token); True
    when created. An existing one without the version scope (made before policies had one) gets it, keeping its
    pattern and thresholds."""
    old = next((p for p in admin.policies() if p["name"] == GATE_POLICY), None)
    if old is not None:
        if not old.get("version_tags"):
            keep = {k: old[k] for k in ("object_type", "name_pattern", "aliases", "required_evals")}
            admin.put_policy(GATE_POLICY, keep | {"version_tags": SCOPE})
        return False
    admin.put_policy(GATE_POLICY, gate_policy(name_pattern))
    return True


def dataset_version(
    registry: RegistryClient, name: str, sha256: str, rows: int, source: str, description: str
) -> dict[str, Any]:
    """The dataset version of `name` with this digest, registered when missing."""
    body = {
        "digest": f"sha256:{sha256}",
        "schema": {"messages": "list[{role, content}]"},
        "row_count": rows,
        "source": source,
        "source_type": "local",
        "description": description,
    }
    return registry.ensure_dataset_version(name, body)


def check_dataset_ref(registry: RegistryClient, ref: str, sha256: str) -> dict[str, Any]:
    """`name:version` of an exported dataset; refuses a file whose sha256 is not the registered one."""
    name, _, version = ref.rpartition(":")
    registered = registry.dataset_version(name, version)["digest"]
    if registered != f"sha256:{sha256}":
        raise ValueError(f"dataset {ref} has digest {registered}, the training file is sha256:{sha256}")
    return {"name": name, "version": int(version)}


def register_version(
    registry: RegistryClient,
    model_name: str,
    artifact_uri: str,
    datasets: list[dict[str, Any]],
    eval_results: dict[str, float],
    tags: dict[str, str],
    description: str,
    evaluator_token: str | None,
) -> dict[str, Any]:
    """Register the version and, with an evaluator token, its evidence; returns version and evidence run id."""
    body = {
        "format": "gguf",
        "artifact_uri": artifact_uri,
        "engine": "llamacpp",
        "engine_args": {"n_ctx": 2048, "parallel_slots": 4},
        "context_length": 2048,
        "quantisation": tags.get("quantisation", "Q4_1"),
        "license": "apache-2.0",
        "price_per_1m_input": 0.10,
        "price_per_1m_output": 0.20,
        "eval_results": eval_results,
        "datasets": datasets,
        "description": description[:5000],
        "tags": tags,
    }
    try:
        version = registry.create_model_version(model_name, body)
    except RegistryError as exc:
        if exc.code != "duplicate_version":
            raise
        # The same merged GGUF (same dataset, same config: a re-run resumed to the end) is that version already:
        # take it, and record this run's evaluation for it again below.
        version = str(exc.error["existing_version"])
    evidence = None
    if evaluator_token:
        params = {"evaluator": "finetune", "training_run": tags.get("training_run_id", "")}
        evidence = registry.record_evaluation(model_name, version, eval_results, params, evaluator_token)
        registry.attach_evaluation(model_name, version, evidence)
    return {"version": version, "evidence_run_id": evidence}
