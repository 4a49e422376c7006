"""One fine-tuning run end to end: dataset version -> LoRA -> merged GGUF -> base vs tuned eval -> registry.

Each stage writes under <work_dir>/runs/<key>/ (key = hash of the dataset digest and the training config), so
running the same command again resumes from the last checkpoint instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.finetune import chat, evaluate, export, gguf_io, replay, task
from services.finetune.settings import REPO_ROOT, FinetuneSettings
from services.finetune.train import TrainConfig

REGRESSION_SET = REPO_ROOT / "services" / "finetune" / "data" / "regression.jsonl"


@dataclass(frozen=True)
class RunSpec:
    dataset: Path
    train: TrainConfig
    dataset_ref: str | None = None  # name:version of the registered export (lineage); None: registered here
    held_out_fraction: float = 0.2
    eval_rows: int = 40  # held-out rows evaluated (generation through llama.cpp is the slow part)
    regression: Path = REGRESSION_SET
    merge_quant: str = "F16"
    max_new_tokens: int = 64
    register: bool = True


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        chat.split_example(row)  # refuses a row that does not end with an assistant answer
        if not isinstance(row.get("messages"), list):
            raise ValueError(f"{path}:{i + 1}: not a chat row")
    return rows


def split(rows: list[dict[str, Any]], fraction: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) by content hash of each row's prompt: stable across export versions. Replay rows (general
    prompts answered by the base model, replay.py) always train: they are not the task, so never held out."""
    held = [r for r in rows if not replay.is_replay(r) and task.is_held_out(r, fraction)]
    return [r for r in rows if replay.is_replay(r) or not task.is_held_out(r, fraction)], held


def replay_facts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many rows are replay and from where: logged with the run and written into the lineage."""
    sources = sorted({str(r["replay"].get("source", "")) for r in rows if replay.is_replay(r)})
    return {"replay_rows": sum(replay.is_replay(r) for r in rows), "replay_source": ",".join(sources)}


def run_key(dataset_sha: str, cfg: TrainConfig) -> str:
    blob = json.dumps({"dataset": dataset_sha, "config": cfg.as_params()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _base_eval(
    settings: FinetuneSettings, base_path: Path, held: list[dict[str, Any]], reg: list[dict[str, Any]], max_tokens: int
) -> dict[str, Any]:
    """The base model's results, cached by (base file, eval rows): they do not change between tuning runs."""
    blob = json.dumps([str(base_path), held, reg, max_tokens, evaluate.EVAL_VERSION], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()
    cache = settings.work_dir / "base-eval" / f"{key[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    result = evaluate.evaluate_model(base_path, held, reg, max_tokens)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def run(spec: RunSpec, settings: FinetuneSettings, progress: bool = True) -> dict[str, Any]:
    """Train, export, evaluate, log, register; returns the summary the CLI prints."""
    from services.finetune import model as M
    from services.finetune import train as T
    from services.finetune.tracking import TrainingRun
    from services.inference.registry_source import resolve_artifact

    started = time.perf_counter()
    timings: dict[str, float] = {}
    rows = read_rows(spec.dataset)
    dataset_sha = gguf_io.file_sha256(spec.dataset)
    train_rows, held_rows = split(rows, spec.held_out_fraction)
    held_rows = held_rows[: spec.eval_rows]
    replayed = replay_facts(rows)
    regression = read_rows(spec.regression)
    if not train_rows or not held_rows:
        raise ValueError(f"{spec.dataset}: {len(train_rows)} training and {len(held_rows)} held-out rows; need both")
    key = run_key(dataset_sha, spec.train)
    run_dir = settings.work_dir / "runs" / key

    base_path = resolve_artifact(settings.base_artifact_uri)
    t0 = time.perf_counter()
    base = gguf_io.load(base_path)
    params = M.to_device(base.weights)
    timings["load_seconds"] = time.perf_counter() - t0

    tracking = TrainingRun(
        settings,
        f"finetune-{key}",
        {
            "llmops.kind": "finetune",
            "llmops.dataset.sha256": dataset_sha,
            "llmops.base_artifact": settings.base_artifact_uri,
        },
    )
    try:
        tracking.params(
            {
                **spec.train.as_params(),
                "dataset": spec.dataset.name,
                "dataset_sha256": dataset_sha,
                "dataset_ref": spec.dataset_ref or "",
                "train_rows": len(train_rows),
                "heldout_rows": len(held_rows),
                **replayed,
                "regression_rows": len(regression),
                "base_artifact": settings.base_artifact_uri,
                "merge_quant": spec.merge_quant,
            }
        )
        encoded = [chat.encode(base.tokenizer, base.chat_template, r) for r in train_rows]
        data = T.pack(encoded, base.config.pad_id, spec.train.max_len)
        checkpoints = run_dir / "checkpoints"
        last = T.latest_checkpoint(checkpoints)
        state = (
            T.load_checkpoint(last, spec.train, dataset_sha)
            if last
            else T.initial_state(base.config, spec.train, dataset_sha)
        )
        resumed_from = state.step
        state, train_stats = T.train(params, base.config, data, spec.train, state, checkpoints, progress=progress)
        timings.update(train_stats)
        tracking.losses(state.losses)

        t0 = time.perf_counter()
        gguf_path = settings.models_dir / f"{settings.model_name}-ft-{key}.gguf"
        lineage = {
            "training_run_id": tracking.run_id,
            "dataset_sha256": dataset_sha,
            "base_artifact": settings.base_artifact_uri,
            "dataset_ref": spec.dataset_ref or "",
            **replayed,
        }
        exported = export.export_gguf(base, state.lora, spec.train.scale, gguf_path, lineage, spec.merge_quant)
        gguf_sha = gguf_io.file_sha256(gguf_path)
        timings["export_seconds"] = time.perf_counter() - t0
        del params, base  # the evaluation loads each GGUF itself; free the base's float32 copy first

        t0 = time.perf_counter()
        base_eval = _base_eval(settings, base_path, held_rows, regression, spec.max_new_tokens)
        tuned_eval = evaluate.evaluate_model(gguf_path, held_rows, regression, spec.max_new_tokens)
        if settings.guardrails_url:
            _guardrails(settings, base_eval, tuned_eval, held_rows, regression)
        comparison = evaluate.compare(base_eval, tuned_eval)
        timings["eval_seconds"] = time.perf_counter() - t0
        eval_results = {
            "finetune_regression_ppl_ratio": comparison["regression_perplexity_ratio"],
            "finetune_task_exact_gain": comparison["task_exact_gain"],
            # The platform's generic gate metric: share of held-out tasks the answer passes (exact match).
            "eval_pass_rate": tuned_eval["metrics"]["task_exact"],
            **{f"tuned_{k}": v for k, v in tuned_eval["metrics"].items()},
            **{f"base_{k}": v for k, v in base_eval["metrics"].items()},
        }
        metrics = {**eval_results, **comparison, **{k: v for k, v in timings.items() if k != "steps_run"}}
        tracking.metrics(metrics)
        table = evaluate.table(base_eval["metrics"], tuned_eval["metrics"])
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "comparison.md").write_text(table + "\n")
        (run_dir / "eval.json").write_text(
            json.dumps({"base": base_eval, "tuned": tuned_eval, "comparison": comparison}, indent=2)
        )
        for artifact in (run_dir / "comparison.md", run_dir / "eval.json", spec.regression):
            tracking.artifact(artifact)

        registered = None
        if spec.register and settings.registry_url:
            registered = _register(
                settings, spec, tracking.run_id, dataset_sha, len(rows), gguf_path, gguf_sha, eval_results, exported
            )
        tracking.finish()
    except BaseException:
        tracking.finish("FAILED")
        raise
    timings["total_seconds"] = time.perf_counter() - started
    summary = {
        "run_key": key,
        "training_run_id": tracking.run_id,
        "tracking_uri": tracking.uri,
        "resumed_from_step": resumed_from,
        "steps": state.step,
        "first_loss": state.losses[0] if state.losses else None,
        "last_loss": state.losses[-1] if state.losses else None,
        "gguf": str(gguf_path),
        "gguf_sha256": gguf_sha,
        "exported": exported,
        "dataset_sha256": dataset_sha,
        "train_rows": len(train_rows),
        "heldout_rows": len(held_rows),
        **replayed,
        "eval_results": eval_results,
        "comparison": comparison,
        "table": table,
        "timings": timings,
        "registered": registered,
    }
    # The last run's summary where the next step of the loop (module 9: promote, serve) reads the version from.
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    (settings.work_dir / "last-run.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "table"}))
    return summary


def _last_user_text(row: dict[str, Any]) -> str:
    prompt, _ = chat.split_example(row)
    return next((str(m["content"]) for m in reversed(prompt) if m.get("role") == "user"), "")


def _guardrails(
    settings: FinetuneSettings,
    base_eval: dict[str, Any],
    tuned_eval: dict[str, Any],
    held_rows: list[dict[str, Any]],
    regression: list[dict[str, Any]],
) -> None:
    """Both models' answers through the guardrails service's output check (base answers may come from the cache)."""
    from llmops_common.http import BlockingHTTP

    token = settings.guardrails_token.get_secret_value() if settings.guardrails_token else ""
    held = [_last_user_text(r) for r in held_rows]
    reg = [_last_user_text(r) for r in regression]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with BlockingHTTP(str(settings.guardrails_url), timeout_s=60, connect_s=60, headers=headers) as http:
        for result in (base_eval, tuned_eval):
            evaluate.guardrails_metrics(result, held, reg, http, settings.guardrails_policy)


def _register(
    settings: FinetuneSettings,
    spec: RunSpec,
    run_id: str,
    dataset_sha: str,
    rows: int,
    gguf_path: Path,
    gguf_sha: str,
    eval_results: dict[str, float],
    exported: dict[str, Any],
) -> dict[str, Any]:
    from llmops_common.registry_client import RegistryClient
    from services.finetune import register as R

    base = str(settings.registry_url)
    token = settings.registry_token.get_secret_value() if settings.registry_token else ""
    with RegistryClient(base, token, timeout_s=120) as registry:
        if spec.dataset_ref:
            training = R.check_dataset_ref(registry, spec.dataset_ref, dataset_sha)
        else:
            training = R.dataset_version(
                registry,
                f"finetune-{spec.dataset.stem}"[:100],
                dataset_sha,
                rows,
                f"file://{spec.dataset.resolve()}",
                "fine-tuning rows (chat JSONL)",
            )
        reg_sha = gguf_io.file_sha256(spec.regression)
        regression = R.dataset_version(
            registry,
            "finetune-regression",
            reg_sha,
            len(read_rows(spec.regression)),
            f"file://{spec.regression.resolve()}",
            "fixed regression set (chat JSONL)",
        )
        gate_created = False
        if settings.admin_token:
            with RegistryClient(base, settings.admin_token.get_secret_value(), timeout_s=60) as admin:
                gate_created = R.ensure_gate(admin, settings.model_name)
        # No `finetuned` tag: the registry derives it from the `training` dataset below (a registrant cannot set it,
        # so finetune-gate's scope cannot be escaped by leaving it out).
        tags = {
            "training_run_id": run_id,
            "base_artifact": settings.base_artifact_uri,
            "dataset_sha256": dataset_sha,
            "gguf_sha256": gguf_sha,
            "quantisation": "Q4_1" if spec.merge_quant == "same" else f"Q4_1+{spec.merge_quant}",
            "lora": f"rank={spec.train.rank},alpha={spec.train.alpha},targets={','.join(spec.train.targets)}",
            "steps": str(spec.train.steps),
        }
        result = R.register_version(
            registry,
            settings.model_name,
            f"file://{gguf_path.resolve()}",
            [{**training, "context": "training"}, {**regression, "context": "eval"}],
            eval_results,
            tags,
            f"LoRA fine-tune of {settings.base_artifact_uri} on {spec.dataset.name} (training run {run_id}); "
            f"{exported['tensors_changed']} adapted tensors written as {'/'.join(exported['requantised'])}.",
            settings.evaluator_token.get_secret_value() if settings.evaluator_token else None,
        )
    return {**result, "datasets": [training, regression], "gate_policy_created": gate_created}
