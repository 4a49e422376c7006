"""Issue 12 row 10: requests that are not LLM calls (RAG via POST /v1/usage/admit, batch uploads and creation)
count against the key's requests per minute, the same counters chat uses; a team's stored batch bytes are capped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway.tests.harness import ADMIN, MODEL, Harness, harness


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
