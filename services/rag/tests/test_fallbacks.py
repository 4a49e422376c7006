"""Qdrant unreachable -> 503 (the service still starts); registry unreachable -> the shipped prompt, marked;
MLflow logging over REST (to a FAKE MLflow; tests/test_registry_integration.py uses a real one)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from llmops_common.service_auth import service_headers
from services.rag.app import create_app
from services.rag.embedder import Embedder
from services.rag.prompts import load_default
from services.rag.tests.conftest import SERVICE_TOKEN, rag_settings
from services.rag.tests.fake_gateway import FakeGatewayState, serve_in_thread
from services.rag.tracking import MlflowRunLogger, NullRunLogger, build_run_logger, flatten


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_qdrant_unreachable_gives_503_and_not_ready(
    tmp_path: Path, embedder: Embedder, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    settings = rag_settings(
        tmp_path, fake_gateway[0], qdrant_url=f"http://127.0.0.1:{closed_port()}", qdrant_timeout_s=1
    )
    with serve_in_thread(create_app(settings, embedder=embedder)) as url:
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["qdrant"] is False
        headers = {"authorization": "Bearer key-team-a"}
        resp = httpx.post(url + "/v1/collections/x/query", json={"query": "q"}, headers=headers, timeout=30)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "vector_store_unavailable"
        assert resp.headers["retry-after"] == "5"
        assert "llmops_rag_store_unavailable_total 1.0" in httpx.get(url + "/metrics").text
        # /answer gives the documented degraded answer instead (tests/reliability/test_qdrant_faults.py)
        resp = httpx.post(url + "/v1/collections/x/answer", json={"question": "q"}, headers=headers, timeout=30)
        assert resp.status_code == 200 and resp.json()["degraded"] is True


def test_gateway_unreachable_gives_503_on_auth(tmp_path: Path, embedder: Embedder) -> None:
    settings = rag_settings(tmp_path, f"http://127.0.0.1:{closed_port()}")
    with serve_in_thread(create_app(settings, embedder=embedder)) as url:
        resp = httpx.get(url + "/v1/collections", headers={"authorization": "Bearer k"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "gateway_unavailable"


def fake_mlflow(seen: list[tuple[str, dict]]) -> FastAPI:
    """A FAKE MLflow tracking server: only the REST calls the logger makes."""
    app = FastAPI()

    @app.get("/api/2.0/mlflow/experiments/get-by-name")
    async def by_name() -> object:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error_code": "RESOURCE_DOES_NOT_EXIST"}, status_code=404)

    @app.post("/api/2.0/mlflow/{path:path}")
    async def post(path: str, request: Request) -> dict:
        seen.append((path, await request.json()))
        if path == "experiments/create":
            return {"experiment_id": "11"}
        if path == "runs/create":
            return {"run": {"info": {"run_id": "run-1"}}}
        return {}

    return app


def test_mlflow_logger_logs_params_metrics_tags() -> None:
    assert isinstance(build_run_logger("", "rag"), NullRunLogger)
    seen: list[tuple[str, dict]] = []
    with serve_in_thread(fake_mlflow(seen)) as url:
        logger = build_run_logger(url, "rag")
        assert isinstance(logger, MlflowRunLogger)
        run_id = logger.log_run("eval-x", flatten("", {"a": {"b": 1}}), {"recall@5": 0.5}, {"kind": "rag-eval"})
    assert run_id == "run-1"
    calls = dict(seen)
    assert calls["experiments/create"] == {"name": "rag"}
    assert calls["runs/log-batch"]["params"] == [{"key": "a.b", "value": "1"}]
    assert calls["runs/log-batch"]["metrics"][0]["key"] == "recall_at_5"  # MLflow refuses "@" in metric names
    assert calls["runs/update"]["status"] == "FINISHED"
    assert MlflowRunLogger(f"http://127.0.0.1:{closed_port()}", "rag", timeout_s=1).log_run("r", {}, {}, {}) is None


def test_registry_unreachable_at_start_answers_with_the_shipped_prompt_and_says_so(
    tmp_path: Path, embedder: Embedder, fake_gateway: tuple[str, FakeGatewayState], caplog: pytest.LogCaptureFixture
) -> None:
    settings = rag_settings(
        tmp_path, fake_gateway[0], registry_url=f"http://127.0.0.1:{closed_port()}", registry_timeout_s=1
    )
    headers = {"authorization": "Bearer key-team-a"}
    app = create_app(settings, embedder=embedder)
    with caplog.at_level(logging.WARNING, logger="rag.registry"), serve_in_thread(app) as url:
        assert httpx.post(url + "/v1/collections", json={"name": "notes"}, headers=headers).status_code == 201
        docs = {"documents": [{"id": "cats", "text": "Cats eat fish and sleep all day long."}], "wait": True}
        job = httpx.post(url + "/v1/collections/notes/documents", json=docs, headers=headers, timeout=60).json()
        # Ingestion still succeeds; the registry's absence is noted on the run, not an error.
        assert job["status"] == "succeeded" and job["run"]["dataset_version"] is None
        assert "registry unreachable" in job["run"]["dataset_error"]
        out = httpx.post(
            url + "/v1/collections/notes/answer", json={"question": "What do cats eat?"}, headers=headers
        ).json()
        # An internal route: the service token, not a team's key.
        assert httpx.get(url + "/v1/prompts/answer", headers=headers).status_code == 401
        prompt = httpx.get(url + "/v1/prompts/answer", headers=service_headers(SERVICE_TOKEN)).json()
    assert out["prompt_version"] == "rag-answer@2 (shipped)"
    sent = fake_gateway[1].chat_calls[-1]["messages"]
    assert sent[1] == {"role": "user", "content": "What do cats eat?"}
    assert sent[0]["content"].startswith(load_default("rag-answer", "2").content("system").split("{{")[0])
    assert prompt["fallback"] is True and prompt["source"] == "shipped" and prompt["registry"]["registry_error"]
    assert any("shipped template" in r.getMessage() for r in caplog.records)
