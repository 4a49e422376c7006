"""Contract tests of the RAG API: any implementation must pass them.

Against another implementation: RAG_CONTRACT_URL=http://host:port RAG_CONTRACT_KEY=<team key>
RAG_CONTRACT_OTHER_KEY=<key of another team> pytest services/rag/tests/test_contract.py
Without RAG_CONTRACT_URL they run against this service (in-process, FAKE gateway keys).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

DOC = (
    "# Solar power\n\nSolar panels turn sunlight into electricity using photovoltaic cells.\n\n## Storage\n\n"
    "Batteries store solar electricity for use at night."
)


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> str:
    return os.environ.get("RAG_CONTRACT_URL") or request.getfixturevalue("rag_url")


@pytest.fixture(scope="module")
def api(base_url: str) -> Iterator[httpx.Client]:
    key = os.environ.get("RAG_CONTRACT_KEY", "key-team-a")
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def other(base_url: str) -> Iterator[httpx.Client]:
    key = os.environ.get("RAG_CONTRACT_OTHER_KEY", "key-team-b")
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def collection(api: httpx.Client) -> Iterator[str]:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    assert api.post("/v1/collections", json={"name": name}).status_code == 201
    resp = api.post(
        f"/v1/collections/{name}/documents",
        json={
            "documents": [
                {"id": "solar", "text": DOC, "content_type": "text/markdown", "metadata": {"topic": "energy"}}
            ]
        },
    )
    assert resp.status_code == 202
    job_id = resp.json()["id"]
    for _ in range(600):
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["status"] == "succeeded" and job["documents_done"] == 1 and job["chunks_done"] >= 1
    yield name
    api.delete(f"/v1/collections/{name}")


def assert_envelope(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status
    err = resp.json()["error"]
    assert {"message", "type", "code", "request_id"} <= err.keys() and err["message"]


def test_operations_endpoints(base_url: str) -> None:
    assert httpx.get(base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(base_url + "/readyz").status_code == 200
    assert "llmops_rag_" in httpx.get(base_url + "/metrics").text


def test_errors_use_the_envelope(base_url: str, api: httpx.Client, collection: str) -> None:
    assert_envelope(httpx.get(base_url + "/v1/collections"), 401)
    assert_envelope(api.post("/v1/collections", json={"name": "UPPER case"}), 400)
    assert_envelope(api.post("/v1/collections", json={"name": collection}), 409)
    assert_envelope(api.post("/v1/collections/does-not-exist/query", json={"query": "x"}), 404)


@pytest.mark.parametrize("strategy", ["dense", "sparse", "hybrid"])
def test_query_shape(api: httpx.Client, collection: str, strategy: str) -> None:
    body = api.post(
        f"/v1/collections/{collection}/query",
        json={
            "query": "How is solar power stored at night?",
            "strategy": strategy,
            "top_k": 3,
            "filters": {"topic": "energy"},
        },
    ).json()
    top = body["passages"][0]
    assert {"chunk_id", "document_id", "title", "text", "score", "relevance"} <= top.keys()
    assert top["document_id"] == "solar" and "Batteries" in top["text"]


def test_answer_shape_and_not_found(api: httpx.Client, collection: str) -> None:
    out = api.post(f"/v1/collections/{collection}/answer", json={"question": "How is solar power stored?"}).json()
    assert {"answer", "citations", "passages", "prompt_version", "model_version", "degraded", "not_found"} <= out.keys()
    if not out["degraded"]:
        assert isinstance(out["answer"], str) and out["citations"][0]["number"] == 1
        assert {"chunk_id", "document_id", "title", "score"} <= out["citations"][0].keys()
    none = api.post(
        f"/v1/collections/{collection}/answer",
        json={"question": "Who won the 1950 chess final?", "score_threshold": 0.9},
    ).json()
    assert none["not_found"] is True and none["citations"] == []


def test_other_team_cannot_see_it(other: httpx.Client, collection: str) -> None:
    assert other.get(f"/v1/collections/{collection}").status_code == 404
    assert other.post(f"/v1/collections/{collection}/query", json={"query": "solar"}).status_code == 404


def test_documents_list_and_delete(api: httpx.Client, collection: str) -> None:
    docs = api.get(f"/v1/collections/{collection}/documents").json()["data"]
    assert [(d["doc_id"], d["status"]) for d in docs] == [("solar", "indexed")]
    assert api.delete(f"/v1/collections/{collection}/documents/solar").status_code == 200
    assert api.post(f"/v1/collections/{collection}/query", json={"query": "solar"}).json()["passages"] == []
