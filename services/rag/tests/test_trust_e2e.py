"""Issue 16 end to end: RAG behind the REAL gateway (subprocess, real Redis) in front of the REAL model (the inference
service with SmolLM2): attributed answers (plain and streamed), abstention without an LLM call, dedup across runs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from services.rag.app import create_app as create_rag
from services.rag.embedder import Embedder
from services.rag.tests.conftest import client_for, rag_settings, real_gateway
from services.rag.tests.fake_gateway import serve_in_thread
from services.rag.tests.test_api import ingest, new_collection
from tests.support.fixtures import MODEL
from tests.support.servers import uvicorn_service

pytestmark = pytest.mark.integration
ADMIN = "trust-admin"
DOCS = [
    {
        "id": "refunds",
        "title": "Refund policy",
        "text": "Customers can ask for a refund within 30 days of purchase. Refunds go back to the original payment "
        "method within 5 business days.",
    },
    {
        "id": "budgets",
        "title": "Budgets",
        "text": "Each team has a budget in US dollars. A request that could exceed the budget is refused "
        "with status 402.",
    },
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real inference service and the real gateway routing the model to it; yields the gateway URL."""
    folder = tmp_path_factory.mktemp("trust-e2e")
    inference_env = {"INFERENCE_MAX_RUNNING": "1", "INFERENCE_PARALLEL_SLOTS": "1", "INFERENCE_DEV_MODE": "true"}
    with uvicorn_service("services.inference.app:create_app", inference_env, log_path=folder / "inf.log") as inference:
        model = {"name": MODEL, "deployments": [{"name": "local", "url": inference + "/v1", "model": MODEL}]}
        with real_gateway(folder, model, ADMIN, {"GATEWAY_METRICS_TOKEN": "trust-metrics"}) as url:
            yield url


@pytest.fixture(scope="module")
def rag(stack: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[httpx.Client]:
    """A RAG service that calls the real gateway, and a client with a fresh team key."""
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.post(stack + "/admin/teams", json={"team": "trust"}, headers=admin).status_code == 200
    key = httpx.post(stack + "/admin/keys", json={"team": "trust"}, headers=admin).json()["key"]
    app = create_rag(rag_settings(tmp_path_factory.mktemp("rag"), stack), embedder=embedder)
    with serve_in_thread(app) as url, client_for(url, key) as client:
        yield client


def _gateway_requests(stack: str) -> float:
    """Chat requests the gateway has served (its Prometheus counter, all labels summed)."""
    text = httpx.get(stack + "/metrics", headers={"authorization": "Bearer trust-metrics"}).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("llmops_gateway_requests_total{")
    )


def test_real_answers_are_attributed_and_weak_questions_abstain(rag: httpx.Client, stack: str) -> None:
    name = new_collection(rag)
    ingest(rag, name, DOCS)
    question = {"question": "How long do I have to ask for a refund?", "top_k": 2}
    out = rag.post(f"/v1/collections/{name}/answer", json=question).json()
    assert out["abstained"] is False and out["not_found"] is False and out["degraded"] is False, out
    attribution = out["attribution"]
    cited = {n for s in attribution["sentences"] for n in s["citations"]}
    assert all(f"[{n}]" in out["answer"] for n in cited)
    assert {c["number"] for c in out["citations"] if c["cited"]} == cited
    assert out["groundedness"] == attribution["groundedness"]
    assert attribution["unsupported"] == [
        s["index"] for s in attribution["sentences"] if s["claim"] and not s["supported"]
    ]

    with rag.stream("POST", f"/v1/collections/{name}/answer", json=question | {"stream": True}) as resp:
        events = [json.loads(ln[5:]) for ln in resp.iter_lines() if ln.startswith("data:") and ln != "data: [DONE]"]
    done = events[-1]
    assert done["type"] == "done" and done["abstained"] is False
    sentences = [e for e in events if e["type"] == "attribution"]
    assert len(sentences) == len(done["attribution"]["sentences"])  # one event per sentence, then the summary

    before = _gateway_requests(stack)
    for gibberish in ("qwzx vbnm plokij", "What is the capital of Australia?"):
        off = rag.post(f"/v1/collections/{name}/answer", json={"question": gibberish}).json()
        assert off["abstained"] is True and off["not_found"] is True and off["usage"] is None, off
    assert _gateway_requests(stack) == before  # no LLM call reached the gateway


def test_the_same_text_under_a_new_id_in_a_later_job_is_a_duplicate(rag: httpx.Client) -> None:
    name = new_collection(rag)
    ingest(rag, name, DOCS)
    later = ingest(rag, name, [{"id": "refunds-copy", "text": DOCS[0]["text"]}])
    assert later["results"][0] | {"linked": False} == {
        "doc_id": "refunds-copy",
        "status": "duplicate",
        "duplicate_of": "refunds",
        "linked": False,
        "chunks": 0,
    }
    hits = rag.post(f"/v1/collections/{name}/query", json={"query": "refund within 30 days", "top_k": 5}).json()
    assert [p["document_id"] for p in hits["passages"]].count("refunds") == 1
    assert "refunds-copy" not in [p["document_id"] for p in hits["passages"]]
