"""Issue 12 row 10: retrieval and ingestion count against the caller's key at the gateway (POST /v1/usage/admit)
before any work, with the tokens the embedder reads (charged there), and the gateway's refusals reach the caller
unchanged. FAKE gateway here; test_metering_gateway.py
runs the real one."""

from __future__ import annotations

import httpx

from services.rag.embedder import Embedder
from services.rag.tests.fake_gateway import FakeGatewayState
from services.rag.tests.test_api import new_collection

DOC = {"id": "d", "text": "Cats eat fish.", "content_type": "text/plain"}
LONG = {"id": "l", "text": "Cats eat fish and sleep in the sun all afternoon.", "content_type": "text/plain"}


def test_query_and_ingest_are_admitted_with_the_callers_key(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    state = fake_gateway[1]
    name = new_collection(team_a)
    assert team_a.post(f"/v1/collections/{name}/documents", json={"documents": [DOC], "wait": True}).status_code == 200
    files = {"files": ("a.txt", b"Dogs bark.", "text/plain")}
    assert team_a.post(f"/v1/collections/{name}/documents/upload", files=files).status_code in (200, 202)
    bulk = team_a.post(f"/v1/collections/{name}/documents/bulk", content=b'{"id": "b", "text": "Birds sing."}\n')
    assert bulk.status_code in (200, 202)
    assert team_a.post(f"/v1/collections/{name}/query", json={"query": "cats"}).status_code == 200
    requests = [c for c in state.admit_calls if c[1] != "rag.embed"]  # (the jobs' embedding charges: below)
    assert requests == [("key-team-a", "rag.ingest")] * 3 + [("key-team-a", "rag.query")]
    team_a.get(f"/v1/collections/{name}")  # reading metadata is not metered
    assert len([c for c in state.admit_calls if c[1] != "rag.embed"]) == 4


def test_refusals_are_passed_on_before_any_work(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    state = fake_gateway[1]
    name = new_collection(team_a)
    state.admit_mode = "limited"
    out = team_a.post(f"/v1/collections/{name}/query", json={"query": "cats"})
    assert (out.status_code, out.json()["error"]["code"], out.headers["retry-after"]) == (429, "rate_limited", "7")
    state.admit_mode = "budget"
    out = team_a.post(f"/v1/collections/{name}/documents", json={"documents": [DOC], "wait": True})
    assert (out.status_code, out.json()["error"]["code"]) == (402, "budget_exceeded")
    state.admit_mode = "missing"  # a gateway without the endpoint: refused, never served unmetered
    out = team_a.post(f"/v1/collections/{name}/query", json={"query": "cats"})
    assert (out.status_code, out.json()["error"]["code"]) == (503, "gateway_unavailable")
    state.admit_mode = "ok"
    assert team_a.get(f"/v1/collections/{name}").json()["documents"] == 0


def test_the_tokens_rag_embeds_are_reported_with_the_embedders_own_count(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState], embedder: Embedder
) -> None:
    """A query reports its tokens with its admission; an ingestion, each group of chunks before embedding it
    (`rag.embed`, no extra request); answers and evals their questions' embeddings."""
    state = fake_gateway[1]
    name = new_collection(team_a)
    ingested = team_a.post(f"/v1/collections/{name}/documents", json={"documents": [LONG], "wait": True})
    assert ingested.status_code == 200 and ingested.json()["status"] == "succeeded", ingested.text
    assert state.admit_tokens[0] == ("rag.ingest", 0)
    embedded = [t for kind, t in state.admit_tokens if kind == "rag.embed"]
    assert embedded == [embedder.tokens_read([f"l\n{LONG['text']}"])]  # the chunk as embedded: title, then text
    state.admit_tokens.clear()
    query = "what do cats eat"
    assert team_a.post(f"/v1/collections/{name}/query", json={"query": query}).status_code == 200
    assert state.admit_tokens == [("rag.query", embedder.tokens_read([query]))]
    assert state.admit_tokens[0][1] > 0
    state.admit_tokens.clear()
    assert team_a.post(f"/v1/collections/{name}/answer", json={"question": query}).status_code == 200
    assert state.admit_tokens == [("rag.embed", embedder.tokens_read([query]))]
    state.admit_tokens.clear()
    evaluation = {"name": "e", "questions": [{"question": query, "gold_doc_ids": ["l"]}], "strategies": ["dense"]}
    assert team_a.post(f"/v1/collections/{name}/eval", json=evaluation).status_code == 200
    assert state.admit_tokens == [("rag.embed", embedder.tokens_read([query]))]


def test_an_ingestion_whose_embedding_is_refused_stops_and_says_why(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    """The gateway refusing a group's tokens (budget spent mid-job): nothing more is embedded or indexed, each
    document not indexed carries the gateway's code; the job ends visibly."""
    state = fake_gateway[1]
    name = new_collection(team_a)
    state.admit_mode, state.admit_refuse_kinds = "budget", {"rag.embed"}
    docs = [LONG, LONG | {"id": "m", "text": "Dogs chase cats around the garden every morning."}]
    out = team_a.post(f"/v1/collections/{name}/documents", json={"documents": docs, "wait": True})
    assert out.status_code == 200, out.text
    job = out.json()
    assert job["status"] == "completed_with_errors" and job["chunks_done"] == 0
    assert {r["code"] for r in job["results"]} == {"budget_exceeded"} and len(job["results"]) == 2
    assert "refused embedding" in job["results"][0]["error"]
    assert team_a.get(f"/v1/collections/{name}").json()["documents"] == 0
