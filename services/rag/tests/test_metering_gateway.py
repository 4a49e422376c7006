"""Issue 12 row 10 with the REAL gateway (a subprocess, real Redis, fake engine): chat and RAG retrieval share one
requests-per-minute count of the key, the tokens RAG embeds count against its TPM and budget, and the gateway's
refusals reach RAG's caller unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.rag.app import create_app as create_rag
from services.rag.embedder import Embedder
from services.rag.tests.conftest import client_for, rag_settings, real_gateway
from services.rag.tests.fake_gateway import serve_in_thread
from services.rag.tests.test_api import new_collection
from tests.support.fake_engine import fake_engine_in_thread

pytestmark = pytest.mark.integration  # needs a real gateway subprocess and Redis

ADMIN = "meter-admin"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """The real gateway in a subprocess (its own event loop and clean shutdown), in front of a fake engine."""
    with fake_engine_in_thread() as engine:
        model = {
            "name": "m",
            "price": {"input_per_1m": 1.0, "output_per_1m": 1.0},
            "deployments": [{"name": "fake", "url": engine.url, "api_key_env": "GATEWAY_INFERENCE_TOKEN"}],
        }
        env = {
            "GATEWAY_METRICS_TOKEN": "meter-metrics",
            "GATEWAY_INFERENCE_TOKEN": "unused",
            "GATEWAY_EMBEDDING_PRICE_PER_1M": "1.0",  # 1 micro-USD per embedded token
        }
        with real_gateway(tmp_path, model, ADMIN, env) as url:
            yield url


def test_a_key_with_rpm_2_gets_429_on_its_third_call_across_chat_and_rag(
    gateway: str, tmp_path: Path, embedder: Embedder
) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.post(gateway + "/admin/teams", json={"team": "t1"}, headers=admin).status_code == 200
    created = httpx.post(gateway + "/admin/keys", json={"team": "t1", "rpm_limit": 2}, headers=admin)
    key = created.json()["key"]
    with (
        serve_in_thread(create_rag(rag_settings(tmp_path / "rag", gateway), embedder=embedder)) as rag_url,
        client_for(rag_url, key) as rag,
    ):
        name = new_collection(rag)  # managing collections is not metered
        chat = httpx.post(
            gateway + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
        )
        assert chat.status_code == 200, chat.text
        assert rag.post(f"/v1/collections/{name}/query", json={"query": "cats"}).status_code == 200
        third = rag.post(f"/v1/collections/{name}/query", json={"query": "cats"})
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "key_rpm_exceeded"
        assert int(third.headers["retry-after"]) >= 1


def _metric(gateway: str, name: str, **labels: str) -> float:
    text = httpx.get(gateway + "/metrics", headers={"authorization": "Bearer meter-metrics"}).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_embedded_tokens_are_charged_and_count_against_tpm(gateway: str, tmp_path: Path, embedder: Embedder) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.post(gateway + "/admin/teams", json={"team": "t2"}, headers=admin).status_code == 200
    created = httpx.post(gateway + "/admin/keys", json={"team": "t2", "tpm_limit": 40}, headers=admin).json()
    key, key_id = created["key"], created["key_id"]
    text = "Cats eat fish and sleep in the sun all afternoon."
    query = "what do cats eat"
    with (
        serve_in_thread(create_rag(rag_settings(tmp_path / "rag", gateway), embedder=embedder)) as rag_url,
        client_for(rag_url, key) as rag,
    ):
        name = new_collection(rag)
        doc = {"id": "l", "text": text, "content_type": "text/plain"}
        job = rag.post(f"/v1/collections/{name}/documents", json={"documents": [doc], "wait": True})
        assert job.status_code == 200 and job.json()["status"] == "succeeded", job.text
        assert rag.post(f"/v1/collections/{name}/query", json={"query": query}).status_code == 200
        expected = embedder.tokens_read([f"l\n{text}"]) + embedder.tokens_read([query])
        assert _metric(gateway, "llmops_gateway_tokens_total", team="t2", model="embeddings", kind="embedding") == (
            expected
        )
        spend = httpx.get(f"{gateway}/admin/keys/{key_id}", headers=admin).json()["spend_usd"]
        assert float(spend) == pytest.approx(expected * 1e-6)
        long_query = " ".join(["cats"] * 40)  # more tokens than the key's minute has left
        refused = rag.post(f"/v1/collections/{name}/query", json={"query": long_query})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "key_tpm_exceeded"
