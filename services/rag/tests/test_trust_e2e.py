"""Issue 16 end to end: RAG behind the REAL gateway (subprocess, real Redis) in front of the REAL model (the inference
service with SmolLM2): attributed answers (plain and streamed), abstention without an LLM call, dedup across runs
(skip and link), fusion (hybrid = plain RRF, MMR, group_by document), jobs (progress, pages, cancel,
collection_deleted; every ingestion metered by the real gateway) and the `truncated` flag on a real cut answer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from services.rag.app import create_app as create_rag
from services.rag.embedder import Embedder
from services.rag.fusion import rrf
from services.rag.store import physical_name
from services.rag.tests.conftest import client_for, rag_settings, real_gateway
from services.rag.tests.fake_gateway import serve_in_thread
from services.rag.tests.test_api import ingest, new_collection, wait_job
from services.rag.tests.test_fusion import LONG_CATS, SHORT
from services.rag.tests.test_jobs import many, submit, wait_running
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


@pytest.fixture(scope="module")
def tight(stack: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[httpx.Client]:
    """A second RAG service on the same gateway and model, for another team: answers cut at 4 tokens, results in
    pages of 3, small embedding steps, and `RAG_DEDUP=link`."""
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.post(stack + "/admin/teams", json={"team": "trust-tight"}, headers=admin).status_code == 200
    key = httpx.post(stack + "/admin/keys", json={"team": "trust-tight"}, headers=admin).json()["key"]
    settings = rag_settings(
        tmp_path_factory.mktemp("rag-tight"),
        stack,
        llm_max_tokens=4,
        job_results_page=3,
        ingest_group_chunks=8,
        dedup="link",
    )
    with serve_in_thread(create_rag(settings, embedder=embedder)) as url, client_for(url, key) as client:
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


def test_an_answer_cut_at_max_tokens_by_the_real_model_says_truncated(rag: httpx.Client, tight: httpx.Client) -> None:
    question = {"question": "How long do I have to ask for a refund?", "top_k": 2}
    for client, cut in ((rag, False), (tight, True)):  # max_tokens 256 vs 4 (RAG_LLM_MAX_TOKENS)
        name = new_collection(client)
        ingest(client, name, DOCS)
        out = client.post(f"/v1/collections/{name}/answer", json=question).json()
        assert out["abstained"] is False and out["degraded"] is False and out["truncated"] is cut, out
        if cut:
            assert out["usage"]["completion_tokens"] == 4
        with client.stream("POST", f"/v1/collections/{name}/answer", json=question | {"stream": True}) as resp:
            lines = [ln for ln in resp.iter_lines() if ln.startswith("data:") and ln != "data: [DONE]"]
        assert json.loads(lines[-1][5:])["truncated"] is cut


def test_link_mode_records_the_copy_and_answers_from_the_original(tight: httpx.Client) -> None:
    name = new_collection(tight)
    ingest(tight, name, DOCS)
    later = ingest(tight, name, [{"id": "refunds-copy", "text": DOCS[0]["text"]}])
    assert later["results"][0] == {
        "doc_id": "refunds-copy",
        "status": "duplicate",
        "duplicate_of": "refunds",
        "linked": True,
        "chunks": 0,
    }
    record = tight.get(f"/v1/collections/{name}/documents/refunds-copy").json()
    assert record["status"] == "duplicate" and record["duplicate_of"] == "refunds"
    hits = tight.post(f"/v1/collections/{name}/query", json={"query": "refund within 30 days", "top_k": 5}).json()
    assert [p["document_id"] for p in hits["passages"]].count("refunds") == 1  # indexed once


def test_fusion_mmr_and_group_by_through_the_gateway(rag: httpx.Client) -> None:
    """Hybrid is plain RRF of the dense and sparse lists the API returns; MMR keeps the fused best first and
    spreads the rest over documents; group_by document counts documents."""
    name = new_collection(rag)
    long_text = "\n\n".join(LONG_CATS.split("\n\n") * 4)  # several chunks at the service's 254-token chunks
    ingest(rag, name, [{"id": "cats-long", "title": "Cats", "text": long_text}, *DOCS])
    ingest(rag, name, [{"id": i, "text": t} for i, t in SHORT.items()])
    url = f"/v1/collections/{name}/query"
    for query in ("cats purr and hunt mice", "big cats of the savanna", "refund to the payment method"):
        body = {"query": query, "score_threshold": -1}  # every candidate, so the lists are comparable
        lists = [
            [p["chunk_id"] for p in rag.post(url, json=body | {"strategy": s, "top_k": 50}).json()["passages"]]
            for s in ("dense", "sparse")
        ]
        hybrid = rag.post(url, json=body | {"strategy": "hybrid", "top_k": 5}).json()["passages"]
        assert [p["chunk_id"] for p in hybrid] == [item for item, _ in rrf([lst for lst in lists if lst])[:5]]
        mixed = rag.post(url, json=body | {"strategy": "hybrid", "top_k": 5, "mmr": True}).json()["passages"]
        assert mixed[0]["chunk_id"] == hybrid[0]["chunk_id"]  # the relevance term is the fused score
        assert len({p["document_id"] for p in mixed}) >= len({p["document_id"] for p in hybrid})
    body = {"query": "cats purr and hunt mice", "top_k": 3}
    by_chunk = rag.post(url, json=body).json()["passages"]
    assert [p["document_id"] for p in by_chunk] == ["cats-long"] * 3
    by_doc = rag.post(url, json=body | {"group_by": "document"}).json()["passages"]
    assert len({p["document_id"] for p in by_doc}) == 3 and by_doc[0]["document_id"] == "cats-long"


def test_jobs_progress_pages_cancel_and_collection_deleted_through_the_gateway(tight: httpx.Client) -> None:
    """Jobs of a key the real gateway meters (admission and embedding tokens): progress per document and per
    batch, the results in pages, a cancel, and a delete during ingestion named for the user's collection."""
    name = new_collection(tight)
    long_doc = {"id": "long", "title": "Cats", "text": "\n\n".join(LONG_CATS.split("\n\n") * 6)}
    job = submit(tight, name, [*many(6, "page"), long_doc])
    seen = []
    while (view := tight.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        seen.append((view["documents_read"], view["chunks_embedded"], view["batches_done"]))
        time.sleep(0.05)
    assert view["status"] == "succeeded" and view["counts"] == {"indexed": 7}, view
    assert view["chunks_embedded"] == view["chunks_done"] == view["chunks_total"] >= 8
    assert view["batches_done"] >= 2  # the long document's chunks came in several steps
    assert seen == sorted(seen)  # counters only move forward while the job runs
    assert len(view["results"]) == 3 and view["results_total"] == 7 and view["results_next_cursor"] == 3
    pages, cursor = [], 0
    while cursor is not None:
        page = tight.get(f"/v1/jobs/{job['id']}/results", params={"cursor": cursor, "limit": 3}).json()
        pages += page["data"]
        cursor = page["next_cursor"]
    assert [r["doc_id"] for r in pages] == [*(f"page-{i}" for i in range(6)), "long"]

    cancelled = submit(tight, new_collection(tight), many(300, "cancel"))
    wait_running(tight, cancelled["id"])
    out = tight.post(f"/v1/jobs/{cancelled['id']}/cancel").json()
    assert out["status"] == "cancelled" and out["run"]["counts"]["not_processed"] > 0, out

    doomed = new_collection(tight)
    job = submit(tight, doomed, many(300, "del"))
    wait_running(tight, job["id"])
    assert tight.delete(f"/v1/collections/{doomed}").status_code == 200
    done = wait_job(tight, job["id"])
    assert done["status"] == "failed" and done["error_code"] == "collection_deleted", done
    assert physical_name("trust-tight", doomed) not in str(done) and doomed in done["error"]
