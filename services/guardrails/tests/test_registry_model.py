"""The injection detector as a registered model, against a real registry over a real MLflow server.

Registers the packaged artifact the way `make train-guardrails` does (data files as dataset versions, the
artifact as a model version), checks the seeded production gate refuses it on its own eval results,
records its eval numbers as the guardrails evaluator's run (POST /v1/evaluations, the evidence the gate reads),
promotes a version through a member's request and an admin's approval, and checks that the service loads
`guardrails-injection@production` and swaps to a newly promoted version without a restart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops_common.registry_client import RegistryClient
from services.guardrails.detectors.injection_model import MODEL_JSON, WEIGHTS_FILE
from services.guardrails.detectors.loader import load_detectors
from services.guardrails.settings import GuardrailsSettings
from services.guardrails.training.data import shared_datasets_dir
from services.guardrails.training.register import register
from services.guardrails.training.train_injection import headline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shared_datasets_dir().exists(), reason="shared/datasets is not beside the repository"),
]
PACKAGED = GuardrailsSettings().artifacts_dir
NAME = "guardrails-injection"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A registry over MLflow (both real, ephemeral ports), with a member, the admin token and the guardrails
    evaluator's token; file:// artifacts may live in this session's temporary folders."""
    from services.registry.tests.conftest import ADMIN_TOKEN, EVALUATOR_TOKEN, principals, run_mlflow, run_registry

    roots = {"REGISTRY_FILE_ARTIFACT_ROOTS": str(tmp_path_factory.getbasetemp())}
    with (
        run_mlflow(tmp_path_factory.mktemp("mlflow")) as mlflow,
        run_registry(tmp_path_factory.mktemp("registry"), mlflow.url, extra_env=roots) as server,
        # The member is created by the admin and approved by the second admin (four-eyes outside dev mode).
        principals(server.url) as people,
    ):
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        # The production gate `make up` seeds (services/registry/seed.py): every model needs eval_pass_rate >= 0.8.
        from services.registry.seed import POLICY, POLICY_NAME

        gate = httpx.put(
            f"{server.url}/v1/policies/{POLICY_NAME}", headers=admin, json=POLICY.model_dump(exclude_none=True)
        )
        gate.raise_for_status()
        member = people["member"].http.headers["authorization"].removeprefix("Bearer ")
        yield {"url": server.url, "member": member, "admin": ADMIN_TOKEN, "evaluator": EVALUATOR_TOKEN}


def _artifact(tmp_path: Path, name: str, shift: float = 0.0) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy2(PACKAGED / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    meta = json.loads((PACKAGED / MODEL_JSON).read_text())
    for mode in meta["modes"].values():
        mode["threshold"] = min(0.999, mode["threshold"] + shift)
    (folder / MODEL_JSON).write_text(json.dumps(meta))
    return folder, meta


def _register(registry: dict[str, str], folder: Path, meta: dict[str, Any], evals: dict[str, float]) -> str:
    digest = hashlib.sha256((folder / MODEL_JSON).read_bytes()).hexdigest()
    uri = (folder / MODEL_JSON).as_uri()
    # As `make train-guardrails` with REGISTRY_EVALUATOR_TOKEN: the numbers become the evaluator's run.
    with RegistryClient(registry["url"], registry["member"], timeout_s=30) as client:
        return register(client, uri, digest, meta, evals, registry["evaluator"])


def _promote(registry: dict[str, str], version: str) -> httpx.Response:
    url = registry["url"]
    body = {"object_type": "model", "name": NAME, "alias": "production", "version": version, "reason": "retrained"}
    req = httpx.post(f"{url}/v1/promotions", json=body, headers={"authorization": f"Bearer {registry['member']}"})
    req.raise_for_status()
    return httpx.post(
        f"{url}/v1/promotions/{req.json()['id']}/approve",
        json={"reason": "checked the per-source table"},
        headers={"authorization": f"Bearer {registry['admin']}"},
        timeout=30,
    )


def test_register_gate_load_and_swap(registry: dict[str, str], tmp_path: Path) -> None:
    folder, meta = _artifact(tmp_path, "v1")
    # The per-source figures as training reports them, with a pass rate under the seeded production gate (0.8):
    # the shipped artifact's own (0.81 since the multilingual and harmful-request rules) would pass it.
    metrics = {**headline(meta["loso"]), "eval_pass_rate": 0.7}
    version = _register(registry, folder, meta, metrics)
    got = httpx.get(f"{registry['url']}/v1/models/{NAME}/versions/{version}").json()
    assert got["tags"]["weights_sha256"] == meta["weights_sha256"]
    assert {d["context"] for d in got["datasets"]} == {"training", "eval"}  # Enron: eval only
    assert "guardrails-package-docs" in {d["name"] for d in got["datasets"]}  # documentation negatives too
    # The eval numbers are evidence: read by the registry from the guardrails evaluator's run.
    evidence = got["eval_evidence"]["eval_pass_rate"]
    assert evidence["evaluator"] == "guardrails" and evidence["value"] == pytest.approx(metrics["eval_pass_rate"])
    # Its eval_pass_rate is under the seeded production gate (0.8): the approval is refused.
    refused = _promote(registry, version)
    assert refused.status_code == 422, refused.text

    # A version whose evals pass the gate (here: set by the test) is promoted and served.
    folder2, meta2 = _artifact(tmp_path, "v2", shift=0.0005)
    v2 = _register(registry, folder2, meta2, {"eval_pass_rate": 0.9})
    assert _promote(registry, v2).status_code == 200
    settings = GuardrailsSettings(registry_url=registry["url"], registry_poll_s=3600, load_contextual_encoder=False)
    detector = load_detectors(settings)["input"]["injection"]
    try:
        assert detector.model.version == v2
        folder3, meta3 = _artifact(tmp_path, "v3", shift=0.001)
        v3 = _register(registry, folder3, meta3, {"eval_pass_rate": 0.9})
        assert detector.watcher is not None and not detector.watcher.poll_once()  # not promoted yet
        assert _promote(registry, v3).status_code == 200
        assert detector.watcher.poll_once()
        assert detector.model.version == v3
    finally:
        if detector.watcher is not None:
            detector.watcher.stop()
