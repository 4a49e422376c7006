"""The fine-tuning loop, tiny: the JAX model is the served one (the real 30-block GGUF against llama.cpp); then,
on the first 2 blocks of that GGUF written as a GGUF of their own (llama.cpp loads and serves it; training is ~4x
cheaper), a few LoRA steps lower the loss, a resumed run ends where the uninterrupted one does, and one
`pipeline.run` goes dataset -> merged GGUF -> llama.cpp answers -> MLflow run -> registry version with lineage,
evidence and the gate; that version then serves a canary share through the real gateway (module 9).

Bounded by its timeout; a few minutes on 2 free cores (GGUF loads, XLA compiling the step, the MLflow and registry
servers starting), many times that on a machine shared with other heavy jobs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from services.finetune import chat, gguf_io
from services.finetune import model as M
from services.finetune import train as T
from services.inference.engines.llamacpp import packaged_smollm2_path
from services.registry.tests.conftest import (  # noqa: F401 - fixtures used by name
    ADMIN_TOKEN,
    MLFLOW_ADMIN,
    Caller,
    mlflow_server,
    principals,
    run_registry,
    unique,
)
from tests.support.fixtures import Gateway, start_gateway  # noqa: F401 - fixture used by name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
EVALUATOR = "test-finetune-evaluator-token-0123"
PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "Give me three tips for learning Python."]


def tiny_rows() -> list[dict[str, Any]]:
    """Short rows (about 30 tokens each: a system message replaces the template's default one)."""
    facts = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("sun", "yellow"),
             ("blood", "red"), ("sea", "blue"), ("milk", "white"), ("orange", "orange"), ("night", "dark")]  # fmt: skip
    rows = []
    for i in range(3):
        for thing, colour in facts:
            question = ["Colour of the", "What colour is the", "Which colour has the"][i]
            rows.append({"messages": [
                {"role": "system", "content": "Reply with JSON."},
                {"role": "user", "content": f"{question} {thing}?"},
                {"role": "assistant", "content": json.dumps({"colour": colour})},
            ]})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's first 2 blocks (same vocabulary, head, tokenizer and quantisation) as a GGUF."""
    return gguf_io.write_truncated(packaged_smollm2_path(), tmp_path_factory.mktemp("tiny") / "tiny.gguf", 2)


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> tuple[gguf_io.GgufModel, M.Params]:
    model = gguf_io.load(tiny_gguf)
    assert model.config.layers == 2
    return model, M.to_device(model.weights)


def test_jax_model_agrees_with_llama_cpp() -> None:
    """llama.cpp's greedy continuation, fed back to the JAX model: at each position the JAX argmax must be
    llama.cpp's token. Not every one: llama.cpp multiplies Q4_1 weights by activations quantised to 8 bits
    (Q8_1), the JAX model by float32 activations, so near-ties flip (measured: 68 of 72, 94 %); a wrong RoPE
    layout, GQA grouping or norm would drop agreement far below this (to a few per cent)."""
    import xllamacpp

    from services.inference.engines.llamacpp import server_params

    model = gguf_io.load(packaged_smollm2_path())
    params = M.to_device(model.weights)
    server = xllamacpp.Server(
        server_params(packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=2, http_port=0)
    )
    forward = jax.jit(lambda p, t: M.forward(p, {}, t, model.config, 1.0))
    agree = total = 0
    logprob_gaps = []
    for question in PROMPTS:
        ids = chat.encode_prompt(model.tokenizer, model.chat_template, [{"role": "user", "content": question}])
        body = {"prompt": ids, "max_tokens": 24, "temperature": 0, "n_probs": 1, "cache_prompt": False}
        content = server.handle_completions(body)["choices"][0]["logprobs"]["content"]
        out = [c["id"] for c in content]
        tokens = np.full((1, 128), model.config.pad_id, np.int32)
        tokens[0, : len(ids) + len(out)] = ids + out
        logits = np.asarray(forward(params, jnp.asarray(tokens)))[0, len(ids) - 1 : len(ids) + len(out) - 1]
        agree += int((logits.argmax(-1) == np.array(out)).sum())
        total += len(out)
        logp = np.asarray(jax.nn.log_softmax(logits, -1))[np.arange(len(out)), out]
        logprob_gaps += list(np.abs(logp - np.array([c["logprob"] for c in content])))
    del server
    assert agree / total >= 0.85, f"{agree}/{total}"
    assert float(np.median(logprob_gaps)) < 0.15, logprob_gaps


def test_loss_goes_down_and_a_resumed_run_ends_where_the_straight_run_does(
    tiny: tuple[gguf_io.GgufModel, M.Params], tmp_path: Path
) -> None:
    model, params = tiny
    data = T.pack([chat.encode(model.tokenizer, model.chat_template, r) for r in tiny_rows()], model.config.pad_id, 64)
    cfg = T.TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup_steps=1, checkpoint_every=3, rank=4)
    straight, stats = T.train(
        params, model.config, data, cfg, T.initial_state(model.config, cfg, "d"), None, progress=False
    )
    # The 2-block model starts far off (loss ~30: its head reads a hidden state 28 blocks early); 6 steps cut it
    # by a sixth (measured 31.9 -> 26.4), the full model by 5-10x in as many (0.6 -> 0.05).
    assert np.mean(straight.losses[-2:]) < straight.losses[0] * 0.9, straight.losses
    assert stats["train_tokens_per_s"] > 0

    folder = tmp_path / "checkpoints"
    first, _ = T.train(params, model.config, data, cfg, T.initial_state(model.config, cfg, "d"), folder, until=3,
                       progress=False)  # fmt: skip
    checkpoint = T.latest_checkpoint(folder)
    assert checkpoint is not None and checkpoint.name == "step-000003.npz"
    resumed = T.load_checkpoint(checkpoint, cfg, "d")
    assert resumed.step == 3 and resumed.losses == first.losses
    resumed, _ = T.train(params, model.config, data, cfg, resumed, folder, progress=False)
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-5)
    for name in straight.lora:
        for part in ("a", "b"):
            np.testing.assert_allclose(resumed.lora[name][part], straight.lora[name][part], atol=1e-6)
    with pytest.raises(ValueError, match="another configuration or dataset"):
        T.load_checkpoint(checkpoint, cfg, "another dataset")


@pytest.fixture(scope="module")
def registry(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:  # noqa: F811
    """A registry whose file:// roots include this module's model folder, with the finetune evaluator's token."""
    models = tmp_path_factory.mktemp("models")
    extra = {"REGISTRY_FILE_ARTIFACT_ROOTS": str(models), "REGISTRY_EVALUATOR_TOKENS": f"finetune:{EVALUATOR}"}
    with run_registry(tmp_path_factory.mktemp("registry"), mlflow_server.url, extra_env=extra) as server:
        yield server.url, mlflow_server.url, models


@dataclass
class TinyRun:
    """One tiny `pipeline.run` on the 2-block model, registered in the module's registry."""

    summary: dict[str, Any]
    settings: Any
    name: str
    people: dict[str, Caller]
    registry_url: str
    mlflow_url: str
    models: Path


@pytest.fixture(scope="module")
def tiny_run(
    registry: tuple[str, str, Path], tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TinyRun]:
    """The loop once (3 steps): its registered version is checked below and then served as a canary."""
    from services.finetune.pipeline import RunSpec, run
    from services.finetune.settings import FinetuneSettings

    registry_url, mlflow_url, models = registry
    tmp_path = tmp_path_factory.mktemp("tiny-run")
    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in tiny_rows()))
    regression = tmp_path / "regression.jsonl"
    regression.write_text("".join(json.dumps(r) + "\n" for r in tiny_rows()[::10]))
    name = unique("ft-model")
    with principals(registry_url) as people:
        member_token = people["member"].http.headers["authorization"].removeprefix("Bearer ")
        settings = FinetuneSettings(
            work_dir=tmp_path / "work", models_dir=models, mlflow_tracking_uri=mlflow_url,
            mlflow_username=MLFLOW_ADMIN[0], mlflow_password=MLFLOW_ADMIN[1], registry_url=registry_url,
            registry_token=member_token, evaluator_token=EVALUATOR, admin_token=ADMIN_TOKEN, model_name=name,
            base_artifact_uri=f"file://{tiny_gguf}",
        )  # fmt: skip
        cfg = T.TrainConfig(steps=3, batch_size=4, lr=3e-3, warmup_steps=1, checkpoint_every=3, rank=4)
        spec = RunSpec(dataset=dataset, train=cfg, eval_rows=4, regression=regression, max_new_tokens=12)
        summary = run(spec, settings, progress=False)
        yield TinyRun(summary, settings, name, people, registry_url, mlflow_url, models)


def test_a_tiny_run_registers_a_served_version_with_lineage_and_evidence(tiny_run: TinyRun) -> None:
    from mlflow import MlflowClient

    summary, settings, name, people = tiny_run.summary, tiny_run.settings, tiny_run.name, tiny_run.people
    mlflow_url, models = tiny_run.mlflow_url, tiny_run.models
    # The merged GGUF: Q4_1 everywhere but the adapted matrices, and llama.cpp served it (answers came back).
    gguf = Path(summary["gguf"])
    assert gguf.parent == models and summary["exported"]["tensors_changed"] == 2 * 2  # q and v of 2 blocks
    tuned_answers = json.loads((settings.work_dir / "runs" / summary["run_key"] / "eval.json").read_text())
    assert all(isinstance(a, str) for a in tuned_answers["tuned"]["heldout_answers"])
    assert any(a.strip() for a in tuned_answers["tuned"]["heldout_answers"])
    assert summary["last_loss"] < summary["first_loss"]

    # The training run in MLflow: params, one loss per step, the comparison as an artifact.
    client = MlflowClient(tracking_uri=mlflow_url)
    mlrun = client.get_run(summary["training_run_id"])
    assert mlrun.data.params["dataset_sha256"] == summary["dataset_sha256"]
    assert len(client.get_metric_history(mlrun.info.run_id, "train_loss")) == 3
    assert "finetune_regression_ppl_ratio" in mlrun.data.metrics
    assert {a.path for a in client.list_artifacts(mlrun.info.run_id)} >= {"comparison.md", "eval.json"}

    # The registry version: lineage (datasets, training run, base), evidence from the finetune evaluator.
    version = summary["registered"]["version"]
    got = people["viewer"].http.get(f"/v1/models/{name}/versions/{version}").json()
    assert got["artifact_uri"] == f"file://{gguf.resolve()}"
    assert got["tags"]["training_run_id"] == summary["training_run_id"]
    assert got["tags"]["dataset_sha256"] == summary["dataset_sha256"]
    assert got["tags"]["gguf_sha256"] == summary["gguf_sha256"]
    assert got["tags"]["finetuned"] == "true"  # derived by the registry from the training dataset, not sent
    contexts = {d["context"] for d in got["datasets"]}
    assert contexts == {"training", "eval"}, got["datasets"]
    evidence = got["eval_evidence"]
    assert evidence["finetune_regression_ppl_ratio"]["value"] == pytest.approx(
        summary["eval_results"]["finetune_regression_ppl_ratio"]
    )
    assert summary["registered"]["gate_policy_created"] is True

    # The registry's dry run says which gates apply (nothing is filed), the same as the request then does.
    target = {"object_type": "model", "name": name, "alias": "production", "version": version}
    dry = people["viewer"].http.post("/v1/promotions/check", json=target).json()
    assert "finetune-gate" in dry["policies"] and {r["metric"] for r in dry["rules"]} >= {
        "finetune_regression_ppl_ratio", "finetune_task_exact_gain"}  # fmt: skip

    # The gate applies to the promotion: approved only if the tuned model beats the base by a point of exact
    # match with the regression perplexity within 5 %, else refused naming the policy (four-eyes as ever).
    request = people["member"].http.post("/v1/promotions", json={
        "object_type": "model", "name": name, "alias": "production", "version": version, "reason": "test",
    })  # fmt: skip
    assert request.status_code == 201, request.text
    approved = people["reviewer"].http.post(f"/v1/promotions/{request.json()['id']}/approve", json={"reason": "x"})
    gain = summary["eval_results"]["finetune_task_exact_gain"]
    ratio = summary["eval_results"]["finetune_regression_ppl_ratio"]
    if gain >= 0.01 and ratio <= 1.05:
        assert approved.status_code == 200, approved.text
    else:
        assert approved.status_code == 422, approved.text
        assert "finetune-gate" in approved.text


def test_the_tuned_version_serves_a_canary_share_through_the_gateway(
    tiny_run: TinyRun,
    tiny_gguf: Path,
    start_gateway: Callable[..., Gateway],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Module 9's canary, live: production (the base) and challenger (the tuned version) each served by an inference
    deployment that follows its alias, the gateway in front with the page's routes block (weights 90/10): about a
    tenth of the answers come from the tuned version, and each answer says which version served it, even though the
    gateway's registry catalogue knows only production's."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.servers import uvicorn_service

    people, name = tiny_run.people, tiny_run.name
    tuned = tiny_run.summary["registered"]["version"]
    base_file = tiny_run.models / f"{name}-base.gguf"
    shutil.copyfile(tiny_gguf, base_file)
    body = {"format": "gguf", "artifact_uri": f"file://{base_file.resolve()}", "engine": "llamacpp",
            "engine_args": {"n_ctx": 512, "parallel_slots": 2}, "context_length": 512, "quantisation": "Q4_1",
            "license": "apache-2.0", "price_per_1m_input": 0.1, "price_per_1m_output": 0.2}  # fmt: skip
    created = people["member"].http.post(f"/v1/models/{name}/versions", json=body)
    assert created.status_code == 201, created.text
    base = created.json()["version"]
    for alias, version in (("production", base), ("challenger", tuned)):  # four eyes, as for any alias move
        req = people["member"].http.post("/v1/promotions", json={
            "object_type": "model", "name": name, "alias": alias, "version": version, "reason": "canary"})  # fmt: skip
        assert req.status_code == 201, req.text
        ok = people["reviewer"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "canary"})
        assert ok.status_code == 200, ok.text

    def deployment(alias: str) -> Any:
        env = {"INFERENCE_REGISTRY_URL": tiny_run.registry_url, "INFERENCE_REGISTRY_MODEL": name,
               "INFERENCE_SERVED_MODEL_NAME": name, "INFERENCE_REGISTRY_ALIAS": alias, "INFERENCE_THREADS": "1",
               "INFERENCE_DEV_MODE": "true"}  # fmt: skip
        return uvicorn_service("services.inference.app:create_app", env, log_path=tmp_path / f"{alias}.log",
                               ready_timeout_s=180)  # fmt: skip

    page = Path(__file__).resolve().parents[3] / "docs" / "modules" / "09-bonus-training-and-fine-tuning.md"
    block = re.search(r"<!-- canary-routes -->\n```yaml\n(.*?)\n```", page.read_text(), re.S)
    assert block, "the canary routes block of module 9 is missing"
    (route,) = yaml.safe_load(block.group(1))["models"]
    with deployment("production") as production_url, deployment("challenger") as canary_url:
        urls = {"production": production_url + "/v1", "canary": canary_url + "/v1"}
        route["name"] = name
        for d in route["deployments"]:
            d.update(url=urls[d["name"]], model=name, api_key="")
        gateway = start_gateway([route], env={"GATEWAY_REGISTRY_URL": tiny_run.registry_url})
        key = gateway.key()
        auth = {"authorization": f"Bearer {key}"}

        def ask(i: int) -> tuple[str, str]:
            chat = {
                "model": name,
                "max_tokens": 1,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"hi {i}"}],
            }
            answer = gateway.http.post(f"{gateway.url}/v1/chat/completions", headers=auth, json=chat)
            assert answer.status_code == 200, answer.text
            return answer.headers["x-llmops-deployment"], answer.headers["x-llmops-model-version"]

        with ThreadPoolExecutor(4) as pool:  # a worker's failed assert is raised here, by list()
            served = list(pool.map(ask, range(200)))
    assert len(served) == 200
    assert set(served) == {("production", base), ("canary", tuned)}, Counter(served)  # each answer names its version
    share = sum(d == "canary" for d, _ in served) / len(served)
    assert 0.04 <= share <= 0.18, share  # weight 10 of 100; mean 20 of 200, sd 4.2: about +-3.8 sd
