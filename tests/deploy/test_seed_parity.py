"""`make up`, compose and Helm seed the same objects (issue 14, "Compose = make up"), checked statically: each runs
the one entry point (python -m services.registry.seed) against the registry's own MLflow and store, and the object
list that entry point prints for each deployment's settings (`--plan`) is the same, the GPU profiles adding the
Hugging Face model vLLM serves. The services that read what the seed writes are configured to read it."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator

import pytest
import yaml

from services.registry.seed import MANIFEST, MODEL_NAME, RAG_ANSWER_NAME, main
from services.registry.seed_vllm import HF_MODEL_NAME
from tests.deploy.conftest import CHART_DIR, COMPOSE_DIR, ROOT, by_kind

FULL = "llmops-llmops-platform"
ENTRY = ["-m", "services.registry.seed"]
GPU_MANIFEST = [*MANIFEST, f"model/{HF_MODEL_NAME}@production"]


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ as a deployment gives it to the seed (none of this process's SEED_* / REGISTRY_* settings)."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(("SEED_", "REGISTRY_"))]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def plan(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What the seed's entry point says it ensures with this environment."""
    capsys.readouterr()
    with environment(env):
        assert main(["--plan"]) == 0
    return list(json.loads(capsys.readouterr().out))


def make_up() -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """`make up`'s seed command and environment, and each process's environment (scripts/platformctl.py)."""
    spec = importlib.util.spec_from_file_location("platformctl_seed_parity", ROOT / "scripts" / "platformctl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    procs = module.processes(collections.defaultdict(lambda: "secret"))
    [seeding] = [p for p in procs if p.seed]
    return seeding.seed, {**seeding.env, **seeding.seed_env}, {p.name: p.env for p in procs}


def helm_seed(docs: list[dict]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The seed Job's command, its plain env values, and its Secret-backed variables (name -> Secret key)."""
    [job] = [d for d in docs if d["kind"] == "Job" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "seed"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    plain = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    secret = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    return container["command"], plain, secret


def helm_env(docs: list[dict], service: str) -> dict[str, str]:
    """A platform service's ConfigMap values."""
    return dict(by_kind(docs, "ConfigMap")[f"{FULL}-{service}"]["data"])


def test_the_three_run_one_entry_point_and_seed_the_same_objects(
    compose_config: dict, compose_gpu_config: dict, rendered: dict[str, list[dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    command, env, _ = make_up()
    assert command == [sys.executable, *ENTRY]
    plans = {"make up": plan(env, capsys)}
    for profile, config in (("cpu", compose_config), ("gpu", compose_gpu_config)):
        seed = config["services"]["seed"]
        assert seed["command"] == ["python", *ENTRY] and seed["restart"] == "no"
        plans[f"compose {profile}"] = plan({k: str(v) for k, v in seed["environment"].items()}, capsys)
    for profile in ("cpu", "gpu"):
        job_command, plain, _ = helm_seed(rendered[f"values-{profile}.yaml"])
        assert job_command == ["python", *ENTRY]
        plans[f"helm {profile}"] = plan(plain, capsys)
    assert plans == {
        "make up": MANIFEST,
        "compose cpu": MANIFEST,
        "helm cpu": MANIFEST,
        "compose gpu": GPU_MANIFEST,
        "helm gpu": GPU_MANIFEST,
    }
    assert MANIFEST == [
        "model/smollm2-135m-instruct@production",
        "prompt/rag-default@production",
        "prompt/rag-answer@production",
        "policy/production-gate",
    ]


def test_the_seed_writes_where_the_registry_reads(compose_config: dict, rendered: dict[str, list[dict]]) -> None:
    """Same MLflow, same store, same admin token as the registry in each deployment."""
    shared = (
        "REGISTRY_MLFLOW_TRACKING_URI",
        "REGISTRY_MLFLOW_USERNAME",
        "REGISTRY_DATABASE_URL",
        "REGISTRY_ADMIN_TOKEN",
    )
    _, env, procs = make_up()
    for key in shared:
        assert env.get(key) == procs["registry"].get(key), key
    seed, registry = compose_config["services"]["seed"], compose_config["services"]["registry"]
    for key in (*shared, "REGISTRY_MLFLOW_PASSWORD"):
        assert seed["environment"][key] == registry["environment"][key], key
    docs = rendered["values-gpu.yaml"]
    _, plain, secret = helm_seed(docs)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["services"]["registry"]["secretEnv"]
    assert {k: v for k, v in secret.items()} == {
        k: values[k] for k in ("REGISTRY_MLFLOW_PASSWORD", "REGISTRY_DATABASE_URL", "REGISTRY_ADMIN_TOKEN")
    }
    registry_config = helm_env(docs, "registry")
    for key in ("REGISTRY_MLFLOW_TRACKING_URI", "REGISTRY_MLFLOW_USERNAME"):
        assert plain[key] == registry_config[key], key
    assert plain["SEED_WAIT_FOR_URL"] == f"http://{FULL}-registry:8003/readyz"


def test_inference_and_rag_read_what_the_seed_registers(
    compose_config: dict, compose_gpu_config: dict, rendered: dict[str, list[dict]]
) -> None:
    """Inference follows the production alias of a seeded model (the HF one behind vLLM in the GPU profiles, the
    one vLLM's init step downloads); RAG answers with the seeded rag-answer prompt; compose starts both after the
    seed."""
    _, _, procs = make_up()
    assert procs["inference"]["INFERENCE_REGISTRY_URL"] and procs["rag"]["RAG_REGISTRY_URL"]
    assert procs["inference"].get("INFERENCE_REGISTRY_MODEL", MODEL_NAME) == MODEL_NAME  # defaults to the served name
    dotenv = dict(
        line.split("=", 1)
        for line in (COMPOSE_DIR / "gpu.env").read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    for profile, config, model in (("cpu", compose_config, MODEL_NAME), ("gpu", compose_gpu_config, HF_MODEL_NAME)):
        services = config["services"]
        inference, rag = services["inference"], services["rag"]
        assert inference["environment"]["INFERENCE_REGISTRY_URL"] == "http://registry:8003"
        assert inference["environment"]["INFERENCE_REGISTRY_MODEL"] == model, profile
        assert rag["environment"]["RAG_REGISTRY_URL"] == "http://registry:8003"
        assert rag["environment"].get("RAG_REGISTRY_PROMPT", RAG_ANSWER_NAME) == RAG_ANSWER_NAME
        for dependent in ("inference", "rag", *(("vllm-model",) if profile == "gpu" else ())):
            assert services[dependent]["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    assert dotenv["INFERENCE_REGISTRY_MODEL"] == HF_MODEL_NAME
    assert f"models:/{HF_MODEL_NAME}@production" in " ".join(compose_gpu_config["services"]["vllm-model"]["command"])
    for profile, model in (("cpu", MODEL_NAME), ("gpu", HF_MODEL_NAME)):
        docs = rendered[f"values-{profile}.yaml"]
        inference, rag = helm_env(docs, "inference"), helm_env(docs, "rag")
        assert inference["INFERENCE_REGISTRY_URL"] == f"http://{FULL}-registry:8003"
        assert inference["INFERENCE_REGISTRY_MODEL"] == model, profile
        assert rag["RAG_REGISTRY_URL"] == f"http://{FULL}-registry:8003"
        assert rag.get("RAG_REGISTRY_PROMPT", RAG_ANSWER_NAME) == RAG_ANSWER_NAME
    [vllm] = by_kind(rendered["values-gpu.yaml"], "StatefulSet")[f"{FULL}-vllm"]["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert {"name": "MODEL", "value": HF_MODEL_NAME} in vllm["env"]
