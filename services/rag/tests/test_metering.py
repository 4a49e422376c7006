"""Issue 12 row 10: retrieval and ingestion count against the caller's key at the gateway (POST /v1/usage/admit)
before any work, and the gateway's refusals reach the caller unchanged. FAKE gateway here; test_metering_gateway.py
runs the real one."""

from __future__ import annotations

import httpx

from services.rag.tests.fake_gateway import FakeGatewayState
from services.rag.tests.test_api import new_collection

DOC = {"id": "d", "text": "Cats eat fish.", "content_type": "text/plain"}


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
    assert state.admit_calls == [("key-team-a", "rag.ingest")] * 3 + [("key-team-a", "rag.query")]
    team_a.get(f"/v1/collections/{name}")  # reading metadata is not metered
    assert len(state.admit_calls) == 4


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
