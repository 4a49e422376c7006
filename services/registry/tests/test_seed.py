"""The seed as compose and Helm run it: `python -m services.registry.seed` with nothing but URLs and secrets in its
environment, on an empty MLflow and store. It creates exactly its manifest, the GPU profile's Hugging Face model
included (downloadable by a non-admin MLflow user, as vLLM's init step does), and a second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry

from services.registry.app import build_services
from services.registry.gguf_to_hf import HF_FILES
from services.registry.metrics import RegistryMetrics
from services.registry.seed import manifest
from services.registry.seed_vllm import HF_MODEL_NAME
from services.registry.settings import RegistrySettings
from services.registry.tests.conftest import ADMIN_TOKEN, MLFLOW_ADMIN, MLFLOW_READER, MlflowServer, run_mlflow
from tests.support.servers import REPO

pytestmark = pytest.mark.integration  # needs a real MLflow server (a subprocess)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, dict[str, str]]]:
    """A fresh MLflow and store, and the seed's environment (what compose's `seed` service passes)."""
    folder = tmp_path_factory.mktemp("seed")
    with run_mlflow(folder) as server:
        env = {
            "REGISTRY_MLFLOW_TRACKING_URI": server.url,
            "REGISTRY_MLFLOW_USERNAME": MLFLOW_ADMIN[0],
            "REGISTRY_MLFLOW_PASSWORD": MLFLOW_ADMIN[1],
            "REGISTRY_DATABASE_URL": f"sqlite:///{folder / 'registry.db'}",
            "REGISTRY_ADMIN_TOKEN": ADMIN_TOKEN,
            "SEED_VLLM_MODEL": "true",
        }
        yield server, env


def run_seed(env: dict[str, str]) -> dict:
    """One seed run in its own process; its JSON summary."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "SEED_", "MLFLOW_TRACKING_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "services.registry.seed"],
        cwd=REPO,
        env={**base, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "libs"), base.get("PYTHONPATH", "")]), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # MLflow's client prints a "View run ..." line of its own before the summary.
    return dict(json.loads(proc.stdout[proc.stdout.index('{\n  "principals"') :]))


def test_seed_creates_its_manifest_and_the_vllm_model_once(
    empty: tuple[MlflowServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = empty
    first = run_seed(env)
    assert first["vllm_model_version"] == "1" and first["principals"] == []  # no demo team outside dev mode
    settings = RegistrySettings(
        mlflow_tracking_uri=server.url,
        database_url=env["REGISTRY_DATABASE_URL"],
        admin_token=ADMIN_TOKEN,
        mlflow_username=MLFLOW_ADMIN[0],
        mlflow_password=MLFLOW_ADMIN[1],
    )
    services = build_services(settings, RegistryMetrics(CollectorRegistry()))
    try:
        present = [f"model/{m['name']}@{a}" for m in services.models.list_models() for a in m["aliases"]]
        present += [f"prompt/{p['name']}@{a}" for p in services.prompts.list_prompts() for a in p["aliases"]]
        present += [f"policy/{p['name']}" for p in services.promotions.list_policies()]
        assert sorted(present) == sorted(manifest(vllm_model=True))
        hf = services.models.resolve_uncached(HF_MODEL_NAME, "production")
        assert (hf["format"], hf["engine"], hf["context_length"]) == ("hf", "vllm", 8192)
    finally:
        services.ctx.store.close()

    # vLLM's init step: a non-admin MLflow user downloads the production alias's artifacts.
    reader = {"MLFLOW_TRACKING_USERNAME": MLFLOW_READER[0], "MLFLOW_TRACKING_PASSWORD": MLFLOW_READER[1]}
    download = subprocess.run(
        [sys.executable, "-m", "mlflow", "artifacts", "download", "--artifact-uri",
         f"models:/{HF_MODEL_NAME}@production", "--dst-path", str(tmp_path / "models")],
        env={**os.environ, "MLFLOW_TRACKING_URI": server.url, **reader}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert download.returncode == 0, download.stderr[-3000:]
    files = {p.name for p in (tmp_path / "models").iterdir()}
    assert set(HF_FILES) <= files, files
    assert json.loads((tmp_path / "models" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    second = run_seed(env)  # nothing new: the conversion is recognised by the GGUF's digest, not redone
    assert second["vllm_model_version"] is None and second["aliases"] == [] and second["model_version"] is None
    versions = MlflowClient(tracking_uri=server.url).search_model_versions(f"name='{HF_MODEL_NAME}'")
    assert len(versions) == 1
