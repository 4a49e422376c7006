"""A key revoked through the gateway's admin API stops working on RAG and feedback within a second (issue 12,
row 9): the real gateway (subprocess), the real feedback and RAG apps (in this loop), the real Redis feed."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.feedback.tests.helpers import serve
from services.rag.app import create_app as create_rag
from services.rag.settings import RagSettings
from tests.support.fixtures import REDIS_URL, Gateway
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


class StubEmbedder:
    """Enough of services.rag.embedder.Embedder to start RAG: these tests never embed anything."""

    max_tokens, dimension, model_name, model_version = 254, 8, "stub", "0"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: list[str]) -> Any:
        raise AssertionError("not used")

    embed_one = embed


async def test_revoked_key_is_refused_by_rag_and_feedback_within_a_second(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Callers cached as valid get a 401 from both services well within 1 s of the revocation reply."""
    prefix = f"test:gwi:rev-{secrets.token_hex(3)}"
    gateway = start_gateway(
        [{"name": "m", "deployments": [{"name": "d", "url": f"http://127.0.0.1:{free_port()}/v1"}]}],
        env={"GATEWAY_REDIS_PREFIX": prefix},
    )
    feedback = create_feedback(
        FeedbackSettings(
            redis_url=REDIS_URL,
            gateway_url=gateway.url,
            gateway_redis_prefix=prefix,
            auth_cache_s=60,  # a long safety-net TTL: only the change feed can make this test pass
            consumer_enabled=False,
            drift_enabled=False,
            sqlite_path=str(tmp_path / "feedback.db"),
            log_json=False,
        )
    )
    rag = create_rag(
        RagSettings(
            data_dir=str(tmp_path / "rag"),
            gateway_url=gateway.url,
            gateway_redis_url=REDIS_URL,
            gateway_redis_prefix=prefix,
            me_cache_ttl_s=60,
            qdrant_url=None,
            log_json=False,
            service_token="rag-internal-test-token",  # RAG refuses to start without one (not in dev mode)
        ),
        embedder=StubEmbedder(),  # type: ignore[arg-type]
    )
    team = f"rev-{secrets.token_hex(3)}"
    gateway.team(team)
    created = gateway.admin.post("/admin/keys", json={"team": team})
    created.raise_for_status()
    key, key_id = created.json()["key"], created.json()["key_id"]
    async with serve(feedback) as feedback_url, serve(rag) as rag_url, httpx.AsyncClient() as http:
        assert feedback.state.identity.cache.live and rag.state.gateway.identity.cache.live
        headers = {"authorization": f"Bearer {key}"}
        urls = [f"{feedback_url}/v1/requests", f"{rag_url}/v1/collections"]
        for _ in range(2):  # the second round is answered from the caches
            for url in urls:
                assert (await http.get(url, headers=headers)).status_code == 200
        assert len(feedback.state.identity.cache) == 1 and len(rag.state.gateway.identity.cache) == 1

        revoked = await asyncio.to_thread(gateway.admin.delete, f"/admin/keys/{key_id}")
        assert revoked.status_code == 200, revoked.text
        start = time.monotonic()
        pending = set(urls)
        while pending:
            for url in list(pending):
                r = await http.get(url, headers=headers)
                if r.status_code == 401:
                    assert r.json()["error"]["code"] in ("revoked_api_key", "invalid_api_key")
                    pending.discard(url)
                else:
                    assert r.status_code == 200
            assert time.monotonic() - start < 1.0, f"still accepted after 1 s: {pending}"
            await asyncio.sleep(0.01)
