"""Issue 12 row 10: requests that are not LLM calls (RAG via POST /v1/usage/admit, batch uploads and creation)
count against the key's requests per minute, the same counters chat uses; a team's stored batch bytes are capped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway.tests.harness import ADMIN, MODEL, Harness, harness

pytestmark = pytest.mark.integration  # needs the gateway's real Redis (the harness)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    with harness(tmp_path, team_file_bytes_max=4096) as gw:
        yield gw


def _admit(h: Harness, key: str, kind: str = "rag.query") -> Any:
    return h.client.post("/v1/usage/admit", json={"kind": kind}, headers={"authorization": f"Bearer {key}"})


def _upload(h: Harness, key: str, lines: int = 1, pad: int = 0) -> Any:
    body = b"".join(
        orjson.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": MODEL, "messages": [{"role": "user", "content": "x" * pad}]},
            }
        )
        + b"\n"
        for i in range(lines)
    )
    return h.client.post(
        "/v1/files",
        files={"file": ("in.jsonl", body, "application/jsonl")},
        data={"purpose": "batch"},
        headers={"authorization": f"Bearer {key}"},
    )


def test_chat_and_rag_share_the_keys_requests_per_minute(h: Harness) -> None:
    key, _ = h.key(rpm_limit=2)
    assert h.chat(key).status_code == 200
    assert _admit(h, key).status_code == 204
    refused = _admit(h, key, "rag.ingest")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "key_rpm_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert h.chat(key).status_code == 429  # the RAG admission used the chat path's counter too
    assert h.metric("llmops_gateway_usage_admissions_total", team="t1", kind="rag.query", outcome="admitted") == 1
    assert h.metric("llmops_gateway_usage_admissions_total", team="t1", kind="rag.ingest", outcome="key_rpm") == 1


def test_team_rpm_and_spent_budget_refuse_admission(h: Harness) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    key, _ = h.key(team="t2")
    assert h.client.post("/admin/teams", json={"team": "t2", "rpm_limit": 1}, headers=admin).status_code == 200
    assert _admit(h, key).status_code == 204
    refused = _admit(h, key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "team_rpm_exceeded")

    broke, _ = h.key(team="t3", budget_usd=0)
    spent = _admit(h, broke)
    assert (spent.status_code, spent.json()["error"]["code"]) == (402, "key_budget_exceeded")
    funded, funded_id = h.key(team="t3", budget_usd=1)
    assert _admit(h, funded).status_code == 204
    assert h.spend(funded_id) == 0  # the budget probe is refunded, not charged


def test_bad_or_revoked_keys_get_401(h: Harness) -> None:
    key, key_id = h.key()
    assert _admit(h, "sk-nope").status_code == 401
    revoked = h.client.delete(f"/admin/keys/{key_id}", headers={"authorization": f"Bearer {ADMIN}"})
    assert revoked.status_code in (200, 204), revoked.text
    out = _admit(h, key)
    assert (out.status_code, out.json()["error"]["code"]) == (401, "revoked_api_key")
    assert h.client.post("/v1/usage/admit", json={"kind": "rag.query"}).status_code == 401
    bad = h.client.post("/v1/usage/admit", json={"kind": "chat"}, headers={"authorization": f"Bearer {key}"})
    assert bad.status_code in (400, 422)


def test_uploads_and_batch_creation_count_against_rpm(h: Harness) -> None:
    key, _ = h.key(rpm_limit=2)
    first = _upload(h, key)
    assert first.status_code == 200, first.text
    created = h.client.post(
        "/v1/batches",
        json={"input_file_id": first.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert created.status_code == 200, created.text
    refused = _upload(h, key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "key_rpm_exceeded")
    assert "retry-after" in refused.headers


def test_team_storage_cap(h: Harness) -> None:
    key, _ = h.key()
    assert _upload(h, key, lines=2, pad=1000).status_code == 200  # ~2.3 KB of the 4 KB cap
    full = _upload(h, key, lines=2, pad=1000)
    assert full.status_code == 413
    assert full.json()["error"]["code"] == "team_storage_full"
    assert "4096" in full.json()["error"]["message"]
    other, _ = h.key(team="t9")
    assert _upload(h, other, lines=2, pad=1000).status_code == 200  # the cap is per team


def _embed(h: Harness, key: str, tokens: int, kind: str = "rag.embed") -> Any:
    return h.client.post(
        "/v1/usage/admit", json={"kind": kind, "tokens": tokens}, headers={"authorization": f"Bearer {key}"}
    )


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[Harness]:
    with harness(tmp_path, embedding_price_per_1m=1.0) as gw:  # 1 micro-USD per embedded token
        yield gw


@pytest.fixture
def free(tmp_path: Path) -> Iterator[Harness]:
    with harness(tmp_path, embedding_price_per_1m=0.0) as gw:
        yield gw


def test_embedded_tokens_count_against_tpm_and_are_charged(priced: Harness) -> None:
    """Row 10: the tokens RAG embeds (a query, an ingestion's chunks) count against TPM and the budget."""
    h = priced
    key, key_id = h.key(tpm_limit=100)
    query = _embed(h, key, 60, "rag.query")
    assert query.status_code == 204, query.text
    assert float(query.headers["x-llmops-cost-usd"]) == pytest.approx(60e-6)
    over = _embed(h, key, 50)
    assert (over.status_code, over.json()["error"]["code"]) == (429, "key_tpm_exceeded")
    assert int(over.headers["retry-after"]) >= 1
    assert _embed(h, key, 40).status_code == 204  # exactly the limit
    assert h.spend(key_id) == pytest.approx(100e-6)
    assert h.metric("llmops_gateway_tokens_total", team="t1", model="embeddings", kind="embedding") == 100
    assert h.metric("llmops_gateway_cost_usd_total", team="t1", model="embeddings") == pytest.approx(100e-6)
    assert h.chat(key).status_code == 429  # chat shares the window the embeddings filled


def test_embedding_is_refused_once_it_would_pass_the_budget(priced: Harness) -> None:
    h = priced
    key, key_id = h.key(budget_usd=0.0001)  # 100 tokens' worth
    assert _embed(h, key, 80, "rag.ingest").status_code == 204
    refused = _embed(h, key, 30)
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "key_budget_exceeded")
    assert "embedding 30 tokens" in refused.json()["error"]["message"]
    assert h.spend(key_id) == pytest.approx(80e-6)


def test_embedding_groups_count_no_request_and_free_embeddings_still_count_tokens(free: Harness) -> None:
    """`rag.embed` belongs to an ingestion already admitted: it uses no request of the rpm. At price 0 nothing is
    charged, but the tokens still fill the TPM window."""
    h = free
    key, key_id = h.key(rpm_limit=1, tpm_limit=30)
    assert _embed(h, key, 10, "rag.ingest").status_code == 204
    assert _embed(h, key, 10).status_code == 204 and _embed(h, key, 10).status_code == 204
    assert _embed(h, key, 1).json()["error"]["code"] == "key_tpm_exceeded"
    assert _embed(h, key, 0, "rag.query").json()["error"]["code"] == "key_rpm_exceeded"
    assert h.spend(key_id) == 0
    assert h.metric("llmops_gateway_tokens_total", team="t1", model="embeddings", kind="embedding") == 30
