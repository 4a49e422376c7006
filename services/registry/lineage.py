"""What a model version's lineage says about it, derived by the registry (never taken from a registrant's word)."""

from __future__ import annotations

import json

T = "llmops."  # prefix of every tag the registry owns

# A version is fine-tuned when its lineage says it was trained: a `training` dataset (registry-owned metadata,
# `llmops.datasets`) or a training-run / base-model tag. The registry derives the `finetuned` tag from that, so a
# policy scoped to {"finetuned": "true"} (finetune-gate) cannot be escaped by leaving a tag out; registrants may not
# set it (schemas.RESERVED_TAGS). A lineage claim can only add gates, never remove one.
LINEAGE_TAGS = ("training_run_id", "base_artifact")


def is_finetuned(tags: dict[str, str]) -> bool:
    """Derived from the version's lineage, never from a registrant's `finetuned` tag."""
    datasets = json.loads(tags.get(T + "datasets", "[]"))
    return any(d.get("context") == "training" for d in datasets) or any(tags.get(k) for k in LINEAGE_TAGS)


def free_tags(tags: dict[str, str]) -> dict[str, str]:
    """The registrant's tags, and `finetuned` as the registry derives it. A `finetuned=true` written before the
    tag was reserved is kept (it only adds a gate); any other value of it gives way to the lineage."""
    free = {k: v for k, v in tags.items() if not k.startswith((T, "mlflow."))}
    if is_finetuned(tags):
        free["finetuned"] = "true"
    elif free.get("finetuned") != "true":
        free.pop("finetuned", None)
    return free
