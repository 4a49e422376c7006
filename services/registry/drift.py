"""Drift detection: MLflow's state compared with what the audit log says the registry did (issue 12, row 1).

The audit log is authoritative. Replaying it gives, for each model and prompt, the aliases the registry set
(`alias.bootstrap`, `promotion.approve`) and, for model versions, the serving metadata it registered and the
eval results it recorded. Anything in MLflow that disagrees was changed behind the registry's back: an alias
moved or added, a price or artifact tag rewritten, an `llmops.audit.*` tag forged. Such an object is not served
(resolve answers 409 `tamper_detected`, the catalogue leaves it out), each new finding is counted in
`llmops_registry_tamper_detected_total` and recorded in the audit log as `tamper.detected`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from services.registry.context import Context
from services.registry.errors import RegistryError
from services.registry.mlflow_client import audit_tag
from services.registry.store import promotions

log = logging.getLogger("llmops.registry.drift")
PROMPT_TAG = "mlflow.prompt.is_prompt"
# What the gateway and inference act on: a change to any of these outside the registry is tampering.
SERVED_FIELDS: dict[str, Any] = {
    "format": "",
    "artifact_uri": "",
    "engine": "",
    "engine_args": {},
    "context_length": 0,
    "quantisation": None,
    "license": "",
    "price_per_1m_input": 0.0,
    "price_per_1m_output": 0.0,
    "eval_results": {},
    "eval_evidence": {},
    "created_by": None,
}


@dataclass
class Expected:
    """One object as the audit log describes it."""

    aliases: dict[str, str] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)


def expected_state(entries: list[dict[str, Any]]) -> Expected:
    """Replay the audit entries of one model or prompt (chain order)."""
    out = Expected()
    for e in entries:
        action, after = e["action"], e["after"]
        version = e["object_id"].split("/")[2] if e["object_id"].count("/") >= 2 else None
        if action == "model_version.register" and version and isinstance(after, dict):
            out.versions[version] = {k: after.get(k, default) for k, default in SERVED_FIELDS.items()}
        elif action == "prompt_version.register" and version:
            out.versions[version] = {}
        elif action == "model_version.evals" and version in out.versions and isinstance(after, dict):
            if isinstance(after.get("eval_results"), dict):
                out.versions[version]["eval_results"] = after["eval_results"]
                out.versions[version]["eval_evidence"] = after.get("eval_evidence") or {}
            else:  # entries written before evidence existed: `after` is the results themselves
                out.versions[version]["eval_results"] = after
        elif action in ("alias.bootstrap", "promotion.approve") and isinstance(after, dict) and after.get("alias"):
            if after.get("version") is None:
                out.aliases.pop(after["alias"], None)
            else:
                out.aliases[after["alias"]] = str(after["version"])
    return out


def finding(object_type: str, name: str, kind: str, detail: str) -> dict[str, str]:
    """One disagreement between MLflow and the audit log."""
    return {"object_id": f"{object_type}/{name}", "kind": kind, "detail": detail}


class DriftDetector:
    """Checks one object on demand (every resolve, the catalogue, approvals) or everything (schedule, verify)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client = ctx.mlflow.client
        self._seen: set[tuple[str, str, str]] = set()
        self._tampered: dict[str, bool] = {}
        self._lock = threading.Lock()

    # -- checks ---------------------------------------------------------------------------------------------
    def check_model(self, name: str, rm: Any = None) -> list[dict[str, str]]:
        """Aliases, served metadata of every aliased version, audit and promotion tags of one model."""
        from services.registry.models import version_to_dict  # models imports this module

        rm = rm or self.ctx.mlflow.find(self.client.get_registered_model, name)
        if rm is None:
            return []
        expected = expected_state(self.ctx.audit.for_object("model", name))
        actual = {k: str(v) for k, v in (rm.aliases or {}).items()}
        found = self._alias_findings("model", name, actual, expected)
        for version in sorted(set(actual.values()), key=int):
            want = expected.versions.get(version)
            if want is None:
                found.append(finding("model", name, "unregistered_version", f"version {version} has an alias but "
                                     "was never registered through the registry"))  # fmt: skip
                continue
            mv = self.ctx.mlflow.find(self.client.get_model_version, name, version)
            have = version_to_dict(mv) if mv is not None else {}
            changed = sorted(k for k in SERVED_FIELDS if have.get(k, SERVED_FIELDS[k]) != want[k])
            if changed:
                found.append(finding("model", name, "metadata_changed", f"version {version}: {', '.join(changed)} "
                                     "differ from what was registered"))  # fmt: skip
        return found + self._tag_findings("model", name, dict(rm.tags or {}))

    def check_prompt(self, name: str) -> list[dict[str, str]]:
        """Aliases and audit/promotion tags of one prompt."""
        prompt = self.ctx.mlflow.find(self.client.get_prompt, name)
        if prompt is None:
            return []
        expected = expected_state(self.ctx.audit.for_object("prompt", name))
        actual: dict[str, str] = {}
        for v in self.ctx.mlflow.call(self.client.search_prompt_versions, name, max_results=1000):
            full = self.ctx.mlflow.call(self.client.get_prompt_version, name, v.version)
            actual.update({a: str(v.version) for a in (full.aliases or [])})
        found = self._alias_findings("prompt", name, actual, expected)
        return found + self._tag_findings("prompt", name, dict(prompt.tags or {}))

    def _alias_findings(
        self, object_type: str, name: str, actual: dict[str, str], expected: Expected
    ) -> list[dict[str, str]]:
        found = []
        for alias, version in sorted(actual.items()):
            want = expected.aliases.get(alias)
            if want is None:
                found.append(finding(object_type, name, "alias_not_approved", f"alias {alias!r} -> {version} was "
                                     "never approved"))  # fmt: skip
            elif want != version:
                found.append(finding(object_type, name, "alias_moved", f"alias {alias!r} points at {version}; the "
                                     f"approved version is {want}"))  # fmt: skip
        for alias in sorted(set(expected.aliases) - set(actual)):
            found.append(
                finding(object_type, name, "alias_removed", f"alias {alias!r} was removed outside the registry")
            )
        return found

    def _tag_findings(self, object_type: str, name: str, tags: dict[str, str]) -> list[dict[str, str]]:
        found = []
        prefix = f"{object_type}/{name}"
        for key in sorted(k for k in tags if k.startswith("llmops.audit.")):
            seq = key.removeprefix("llmops.audit.")
            entry = self.ctx.audit.get(int(seq)) if seq.isdigit() else None
            ok = (
                entry is not None
                and (entry["object_id"] == prefix or entry["object_id"].startswith(prefix + "/"))
                and audit_tag(entry) == (key, tags[key])
            )
            if not ok:
                found.append(
                    finding(object_type, name, "forged_audit_tag", f"{key} is not in the audit log as written")
                )
        ids = [k.removeprefix("llmops.promotion.") for k in tags if k.startswith("llmops.promotion.")]
        if ids:
            with self.ctx.store.read() as conn:
                known = set(
                    conn.execute(
                        select(promotions.c.id).where(
                            promotions.c.id.in_(ids),
                            promotions.c.object_type == object_type,
                            promotions.c.name == name,
                        )
                    ).scalars()
                )
            for pid in sorted(set(ids) - known):
                found.append(finding(object_type, name, "forged_promotion_tag", f"llmops.promotion.{pid} is unknown"))
        return found

    # -- decisions ------------------------------------------------------------------------------------------
    def guard(self, object_type: str, name: str, rm: Any = None, *, relock: bool = True) -> None:
        """Raise 409 `tamper_detected` when the object disagrees with the audit log (re-checked under the
        object's lock, so an approval in flight in this process is not mistaken for tampering; callers that
        already hold that lock pass relock=False)."""
        found = self.check_model(name, rm) if object_type == "model" else self.check_prompt(name)
        if found and relock:
            with self.ctx.object_lock(f"{object_type}/{name}"):
                found = self.check_model(name) if object_type == "model" else self.check_prompt(name)
        self.report(object_type, name, found)
        if found:
            raise RegistryError(
                409,
                "tamper_detected",
                f"{object_type} {name!r} was changed in MLflow outside the registry and is not served: "
                + "; ".join(f["detail"] for f in found),
                findings=found,
            )

    def report(self, object_type: str, name: str, found: list[dict[str, str]]) -> None:
        """Count and record findings not seen before; keep the gauge of tampered objects current."""
        new = []
        with self._lock:
            self._tampered[f"{object_type}/{name}"] = bool(found)
            self.ctx.metrics.tampered.set(sum(self._tampered.values()))
            for f in found:
                key = (f["object_id"], f["kind"], f["detail"])
                if key not in self._seen:
                    self._seen.add(key)
                    new.append(f)
        for f in new:
            log.warning("tamper detected: %s %s: %s", f["object_id"], f["kind"], f["detail"])
            self.ctx.metrics.tamper.labels(object_type, f["kind"]).inc()
            try:
                self.ctx.record(
                    actor="system:drift",
                    action="tamper.detected",
                    object_type=object_type,
                    object_id=f["object_id"],
                    reason=f["detail"],
                    after=f,
                )
            except Exception:  # the refusal and the metric matter most; the store may be what is broken
                log.exception("could not record a tamper finding in the audit log")

    def scan(self) -> list[dict[str, str]]:
        """Check every model and prompt in MLflow (the schedule and `GET /v1/audit/verify`)."""
        found: list[dict[str, str]] = []
        for rm in self.ctx.mlflow.call(self.client.search_registered_models, max_results=1000):
            if (rm.tags or {}).get(PROMPT_TAG) == "true":
                continue
            # search results carry no aliases in every MLflow version: read the model itself.
            part = self.check_model(rm.name)
            self.report("model", rm.name, part)
            found += part
        for prompt in self.ctx.mlflow.call(self.client.search_prompts, max_results=1000):
            part = self.check_prompt(prompt.name)
            self.report("prompt", prompt.name, part)
            found += part
        return found
