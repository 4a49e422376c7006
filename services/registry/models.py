"""Model versions: metadata as MLflow model-version tags, a registration run for lineage, aliases, catalogue."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion

from services.registry.auth import Principal
from services.registry.context import Context
from services.registry.datasets import DatasetService, mlflow_digest
from services.registry.drift import DriftDetector
from services.registry.errors import RegistryError
from services.registry.lineage import free_tags
from services.registry.schemas import ModelVersionCreate

log = logging.getLogger("llmops.registry.models")
PROMPT_TAG = "mlflow.prompt.is_prompt"
T = "llmops."  # prefix of every tag the registry owns


def version_to_dict(mv: MlflowModelVersion) -> dict[str, Any]:
    """Read our metadata back from an MLflow model version's tags."""
    tags = dict(mv.tags or {})
    own = {k: v for k, v in tags.items() if k.startswith(T)}
    return {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": sorted(mv.aliases or []),
        "format": own.get(T + "format", ""),
        "artifact_uri": own.get(T + "artifact_uri", mv.source),
        "engine": own.get(T + "engine", ""),
        "engine_args": json.loads(own.get(T + "engine_args", "{}")),
        "context_length": int(own.get(T + "context_length", "0")),
        "quantisation": own.get(T + "quantisation") or None,
        "license": own.get(T + "license", ""),
        "price_per_1m_input": float(own.get(T + "price.input_per_1m", "0")),
        "price_per_1m_output": float(own.get(T + "price.output_per_1m", "0")),
        "eval_results": {k.removeprefix(T + "eval."): float(v) for k, v in own.items() if k.startswith(T + "eval.")},
        "eval_evidence": json.loads(own.get(T + "eval_evidence", "{}")),
        "datasets": json.loads(own.get(T + "datasets", "[]")),
        "description": mv.description or None,
        "tags": free_tags(tags),
        "run_id": mv.run_id or None,
        "created_by": own.get(T + "created_by"),
        "created_at": (mv.creation_timestamp or 0) / 1000,
    }


def _version_tags(body: ModelVersionCreate, actor: Principal) -> dict[str, str]:
    tags = {
        T + "format": body.format,
        T + "artifact_uri": body.artifact_uri,
        T + "engine": body.engine,
        T + "engine_args": json.dumps(body.engine_args, sort_keys=True),
        T + "context_length": str(body.context_length),
        T + "license": body.license,
        T + "price.input_per_1m": repr(body.price_per_1m_input),
        T + "price.output_per_1m": repr(body.price_per_1m_output),
        T + "datasets": json.dumps([d.model_dump() for d in body.datasets]),
        T + "created_by": actor.name,
    }
    if body.quantisation:
        tags[T + "quantisation"] = body.quantisation
    tags.update({f"{T}eval.{k}": repr(v) for k, v in body.eval_results.items()})
    return tags | body.tags


class ModelService:
    """Register, read, resolve and catalogue model versions."""

    def __init__(self, ctx: Context, datasets: DatasetService, drift: DriftDetector) -> None:
        self.ctx = ctx
        self.ml = ctx.mlflow
        self.client = ctx.mlflow.client
        self.datasets = datasets
        self.drift = drift

    def check_artifact_uri(self, uri: str) -> None:
        """Refuse schemes the platform cannot load and local files outside the configured artifact roots
        (a `file:///etc/passwd` version would otherwise be served, and read, by inference)."""
        settings = self.ctx.settings
        parsed = urlparse(uri)
        schemes = {x.strip() for x in settings.artifact_schemes.split(",") if x.strip()}
        if parsed.scheme not in schemes:
            raise RegistryError(400, "invalid_artifact_uri", f"artifact scheme {parsed.scheme!r} is not one of "
                                f"{sorted(schemes)}")  # fmt: skip
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path)).resolve()
            roots = [Path(r.strip()).resolve() for r in settings.file_artifact_roots.split(",") if r.strip()]
            if parsed.netloc not in ("", "localhost") or not any(path.is_relative_to(r) for r in roots):
                raise RegistryError(400, "invalid_artifact_uri", "file:// artifacts must lie under "
                                    f"{', '.join(map(str, roots))} (REGISTRY_FILE_ARTIFACT_ROOTS)")  # fmt: skip

    def _model(self, name: str) -> Any:
        rm = self.ml.find(self.client.get_registered_model, name)
        if rm is None or (rm.tags or {}).get(PROMPT_TAG) == "true":
            raise RegistryError(404, "model_not_found", f"model {name!r} does not exist")
        return rm

    def register(self, actor: Principal, name: str, body: ModelVersionCreate) -> dict[str, Any]:
        """Register a new version; on any failure everything written so far is removed again."""
        self.check_artifact_uri(body.artifact_uri)
        with self.ctx.object_lock(f"model/{name}"):
            refs = [self.datasets.get(d.name, d.version, missing_status=400) for d in body.datasets]
            rm = self.ml.find(self.client.get_registered_model, name)
            if rm is None and self.ml.call(self.client.get_prompt, name) is not None:
                raise RegistryError(409, "name_in_use", f"{name!r} is a prompt; pick another model name")
            if rm is not None:
                for old in self.ml.call(self.client.search_model_versions, f"name='{name}'", max_results=1000):
                    if (old.tags or {}).get(T + "artifact_uri") == body.artifact_uri:
                        raise RegistryError(
                            409,
                            "duplicate_version",
                            f"model {name!r} version {old.version} already has artifact {body.artifact_uri}",
                            existing_version=str(old.version),
                        )
            created_model = rm is None
            if created_model:
                self.ml.call(self.client.create_registered_model, name, tags={T + "managed": "true"})
            run_id = None
            mv: Any = None
            try:
                run_id = self._registration_run(actor, name, body, refs)
                # MLflow refuses local paths as a source unless they sit in a run's artifacts.
                source = f"runs:/{run_id}/model" if body.artifact_uri.startswith("file:") else body.artifact_uri
                # ... and a runs:/<id>/... source unless the version is created with that run (the one holding the
                # artifacts, e.g. the seed's GGUF conversion); the registration run keeps the manifest either way.
                source_run = source.removeprefix("runs:/").lstrip("/").split("/")[0] if source[:6] == "runs:/" else None
                mv = self.ml.call(
                    self.client.create_model_version,
                    name,
                    source,
                    run_id=source_run or run_id,
                    tags=_version_tags(body, actor),
                    description=body.description,
                )
                with self.ctx.store.transaction() as conn:
                    entry = self.ctx.audit.append(
                        conn,
                        actor=actor.name,
                        action="model_version.register",
                        object_type="model",
                        object_id=f"model/{name}/{mv.version}",
                        after=version_to_dict(mv),
                    )
            except BaseException:
                self._undo(name, mv, run_id, created_model)
                raise
        self.ctx.after_commit(entry)
        self.invalidate(name)
        return version_to_dict(mv)

    def _registration_run(self, actor: Principal, name: str, body: ModelVersionCreate, refs: list[dict]) -> str:
        """A run that holds the manifest, params, eval metrics and dataset inputs (lineage in MLflow's UI)."""
        run = self.ml.call(
            self.client.create_run,
            self.ml.experiment_id("models"),
            run_name=f"register-{name}",
            tags={T + "model": name, T + "created_by": actor.name},
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = {
            "format": body.format,
            "artifact_uri": body.artifact_uri[:6000],
            "engine": body.engine,
            "context_length": body.context_length,
            "quantisation": body.quantisation or "none",
            "license": body.license,
            "price_per_1m_input": body.price_per_1m_input,
            "price_per_1m_output": body.price_per_1m_output,
        }
        self.ml.call(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in body.eval_results.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        manifest = body.model_dump(mode="json") | {"name": name}
        self.ml.call(self.client.log_text, run_id, json.dumps(manifest, indent=2), "model/manifest.json")
        if refs:
            inputs = [
                DatasetInput(
                    Dataset(
                        r["name"],
                        mlflow_digest(r["digest"]),
                        r["source_type"],
                        r["source"],
                        json.dumps(r["schema"]),
                        json.dumps({"num_rows": r["row_count"], "version": r["version"]}),
                    ),
                    [InputTag("mlflow.data.context", d.context)],
                )
                for r, d in zip(refs, body.datasets, strict=True)
            ]
            self.ml.call(self.client.log_inputs, run_id, datasets=inputs)
        self.ml.call(self.client.set_terminated, run_id)
        return run_id

    def _undo(self, name: str, mv: Any, run_id: str | None, created_model: bool) -> None:
        # Compensation in reverse order; each step is attempted even if an earlier one fails.
        steps = []
        if mv is not None:
            steps.append(lambda: self.client.delete_model_version(name, mv.version))
        if run_id:
            steps.append(lambda: self.client.delete_run(run_id))
        if created_model:
            steps.append(lambda: self.client.delete_registered_model(name))
        for step in steps:
            try:
                step()
            except Exception:  # best effort: the original error is what the caller must see
                log.warning("compensation step failed while undoing a registration of %s", name, exc_info=True)

    def invalidate(self, name: str) -> None:
        """Forget cached resolutions of this model and the catalogue."""
        self.ctx.cache.invalidate(("model", name))
        self.ctx.cache.invalidate(("catalogue",))

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        """One version with its metadata (one MLflow call on the happy path)."""
        mv = self.ml.find(self.client.get_model_version, name, version)
        if mv is None:
            self._model(name)  # 404 model_not_found first, when that is the reason
            raise RegistryError(404, "version_not_found", f"model {name!r} has no version {version}")
        return version_to_dict(mv)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """All versions, newest first."""
        self._model(name)
        versions = self.ml.call(self.client.search_model_versions, f"name='{name}'", max_results=1000)
        return sorted((version_to_dict(v) for v in versions), key=lambda v: -int(v["version"]))

    def list_models(self) -> list[dict[str, Any]]:
        """Every model (prompts excluded) with its aliases."""
        out = []
        for rm in self.ml.call(self.client.search_registered_models, max_results=1000):
            if (rm.tags or {}).get(PROMPT_TAG) == "true":
                continue
            latest = max((int(v.version) for v in rm.latest_versions or []), default=None)
            out.append(
                {
                    "name": rm.name,
                    "aliases": {k: str(v) for k, v in (rm.aliases or {}).items()},
                    "latest_version": str(latest) if latest else None,
                    "description": rm.description or None,
                }
            )
        return sorted(out, key=lambda m: m["name"])

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of one model (404 when unknown)."""
        return {k: str(v) for k, v in (self._model(name).aliases or {}).items()}

    def resolve_uncached(self, name: str, alias: str) -> dict[str, Any]:
        """The version an alias points at, read from MLflow, after checking the model against the audit log
        (409 `tamper_detected` when an alias or a governance tag was changed outside the registry)."""
        rm = self._model(name)
        self.drift.guard("model", name, rm)
        version = (rm.aliases or {}).get(alias)  # the version the check above looked at
        mv = self.ml.find(self.client.get_model_version, name, str(version)) if version is not None else None
        if mv is None:
            raise RegistryError(404, "alias_not_found", f"model {name!r} has no alias {alias!r}")
        return version_to_dict(mv) | {
            "aliases": sorted(a for a, v in (rm.aliases or {}).items() if str(v) == str(version))
        }

    def evidence(self, name: str, version: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Metrics of a platform evaluation run, read from MLflow by the registry itself (issue 12, row 12):
        the run must carry `llmops.evaluator` (a trusted evaluator) and `llmops.evaluated_model` (this model)."""
        run = self.ml.find(self.client.get_run, run_id)
        if run is None:
            raise RegistryError(400, "unknown_run", f"MLflow has no run {run_id}")
        tags = run.data.tags or {}
        evaluator = tags.get(T + "evaluator")
        trusted = self.ctx.settings.evaluators()
        if evaluator not in trusted:
            raise RegistryError(400, "untrusted_eval_run", f"run {run_id} was not written by a platform evaluator "
                                f"(tag llmops.evaluator in {sorted(trusted)})")  # fmt: skip
        if run.info.experiment_id not in self._evaluator_experiments(evaluator):
            raise RegistryError(400, "untrusted_eval_run", f"run {run_id} carries evaluator {evaluator!r} but lies "
                                "outside that evaluator's experiments (REGISTRY_EVALUATOR_EXPERIMENTS) and the "
                                "registry's own evaluations; record it through POST /v1/evaluations")  # fmt: skip
        if tags.get(T + "evaluated_model") != name or tags.get(T + "evaluated_version", version) != version:
            raise RegistryError(400, "eval_run_mismatch", f"run {run_id} evaluated "
                                f"{tags.get(T + 'evaluated_model')!r}, not {name!r} version {version}")  # fmt: skip
        if run.info.status != "FINISHED":
            raise RegistryError(400, "eval_run_unfinished", f"run {run_id} is {run.info.status}, not FINISHED")
        metrics = {k: float(v) for k, v in (run.data.metrics or {}).items() if math.isfinite(float(v))}
        if not metrics:
            raise RegistryError(400, "eval_run_empty", f"run {run_id} logged no metrics")
        return {k: {"value": v, "run_id": run_id, "evaluator": evaluator} for k, v in metrics.items()}

    def _evaluator_experiments(self, evaluator: str) -> set[str]:
        """Ids of the experiments `evaluator`'s runs may come from: its own, and the registry's evaluations."""
        ids = {self.ml.experiment_id("evaluations")}
        for exp_name in self.ctx.settings.experiments_of(evaluator):
            exp = self.ml.find(self.client.get_experiment_by_name, exp_name)
            if exp is not None:
                ids.add(str(exp.experiment_id))
        return ids

    def record_evaluation(
        self, evaluator: str, name: str, version: str | None, metrics: dict[str, float], params: dict[str, str]
    ) -> dict[str, Any]:
        """Write an evaluator's run into MLflow (experiment `<prefix>-evaluations`), tagged with the evaluator
        the caller's token is bound to; audited."""
        if version is not None:
            self.get_version(name, version)
        else:
            self._model(name)
        tags = {T + "evaluator": evaluator, T + "evaluated_model": name}
        if version is not None:
            tags[T + "evaluated_version"] = version
        run = self.ml.call(
            self.client.create_run, self.ml.experiment_id("evaluations"), run_name=f"eval-{name}", tags=tags
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        self.ml.call(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        self.ml.call(self.client.set_terminated, run_id)
        self.ctx.record(
            actor=f"evaluator:{evaluator}",
            action="evaluation.record",
            object_type="model",
            object_id=f"model/{name}" + (f"/{version}" if version else ""),
            after={"run_id": run_id, "metrics": metrics},
        )
        return {"run_id": run_id, "evaluator": evaluator, "model": name, "version": version, "metrics": metrics}

    def add_evals(
        self, actor: Principal, name: str, version: str, results: dict[str, float], run_id: str | None
    ) -> dict[str, Any]:
        """Attach eval results to an existing version. Numbers the caller posts are recorded as reported;
        with `run_id` the registry reads the run's metrics itself and keeps them as evidence (policies gate
        on evidence only)."""
        with self.ctx.object_lock(f"model/{name}"):
            before = self.get_version(name, version)
            evidence = dict(before["eval_evidence"])
            if run_id:
                evidence |= self.evidence(name, version, run_id)
                results = results | {k: e["value"] for k, e in evidence.items() if e["run_id"] == run_id}
            for key, value in results.items():
                self.ml.call(self.client.set_model_version_tag, name, version, f"{T}eval.{key}", repr(value))
            if run_id:
                self.ml.call(self.client.set_model_version_tag, name, version, f"{T}eval_run_id", run_id)
                blob = json.dumps(evidence, sort_keys=True)
                self.ml.call(self.client.set_model_version_tag, name, version, f"{T}eval_evidence", blob)
            if before["run_id"]:
                now = int(time.time() * 1000)
                self.ml.call(
                    self.client.log_batch, before["run_id"], metrics=[Metric(k, v, now, 1) for k, v in results.items()]
                )
            after = self.get_version(name, version)
            self.ctx.record(
                actor=actor.name,
                action="model_version.evals",
                object_type="model",
                object_id=f"model/{name}/{version}",
                before={"eval_results": before["eval_results"], "eval_evidence": before["eval_evidence"]},
                after={"eval_results": after["eval_results"], "eval_evidence": after["eval_evidence"]},
                reason=f"eval run {run_id}" if run_id else "reported by the caller (no evaluation run)",
            )
        self.invalidate(name)
        return after

    def catalogue(self, alias: str) -> list[dict[str, Any]]:
        """Every model that has `alias`, with the version it points at, engine and prices; a model changed in
        MLflow outside the registry is left out (and reported)."""
        rows = []
        for model in self.list_models():
            version = model["aliases"].get(alias)
            if version is None:
                continue
            try:
                self.drift.guard("model", model["name"])
            except RegistryError as exc:
                if exc.code != "tamper_detected":
                    raise
                continue
            v = self.get_version(model["name"], version)
            rows.append(
                {
                    "name": model["name"],
                    "version": v["version"],
                    "alias": alias,
                    "engine": v["engine"],
                    "format": v["format"],
                    "artifact_uri": v["artifact_uri"],
                    "context_length": v["context_length"],
                    "price_per_1m_input": v["price_per_1m_input"],
                    "price_per_1m_output": v["price_per_1m_output"],
                    "aliases": model["aliases"],
                }
            )
        return rows
