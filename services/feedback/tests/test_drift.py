"""Drift: a real two-sample measure on prompt embeddings, the other signals, gauges, alerts and the log event."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import numpy as np
import pytest
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.drift import Embed, mmd2
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import emit, make_event, serve, wait_for
from services.feedback.tests.traffic import off_topic_prompts, support_prompts

HOUR = 3600.0


def test_mmd_separates_distributions() -> None:
    """MMD^2 is near zero with a high p-value for one distribution, and clearly positive for a shifted one."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 8)), rng.normal(size=(100, 8))
    shifted = rng.normal(loc=0.7, size=(100, 8))
    same, p_same = mmd2(a, b, permutations=100)
    diff, p_diff = mmd2(a, shifted, permutations=100)
    assert abs(same) < 0.01 and p_same > 0.05
    assert diff > 0.05 and p_diff < 0.02


def _events(prompts: list[str], start: float, span: float, **overrides: Any) -> list[dict[str, Any]]:
    step = span / len(prompts)
    return [
        make_event(ts=start + i * step, prompt=[{"role": "user", "content": p}], **overrides)
        for i, p in enumerate(prompts)
    ]


async def test_off_topic_traffic_raises_embedding_drift(
    make_settings: Any, redis: Redis, stream_key: str, embedder: Embed, caplog: pytest.LogCaptureFixture
) -> None:
    """Normal current traffic stays under the threshold; off-topic traffic crosses it, alerts and logs."""
    now = time.time()
    reference = _events(support_prompts(120, seed=1), now - 2 * HOUR + 60, HOUR - 120)
    normal = _events(support_prompts(100, seed=2), now - HOUR + 60, HOUR / 2 - 120)
    settings = make_settings(drift_current_s=HOUR, drift_reference_s=HOUR)
    async with serve(create_app(settings, embed=embedder)) as url:
        await emit(redis, stream_key, reference + normal)
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60) as c:

            async def stored(n: int) -> Any:
                async def check() -> bool:
                    return len((await c.get("/v1/requests", params={"limit": 500})).json()["data"]) == n

                return check

            await wait_for(await stored(220))
            calm = (await c.get("/v1/drift")).json()
            assert calm["windows"]["reference"]["events"] == 120 and calm["windows"]["current"]["events"] == 100
            emb = calm["signals"]["prompt_embedding_mmd"]
            assert emb["score"] is not None and emb["score"] < emb["threshold"] and not emb["alert"]
            assert calm["alerting"] == []

            off = _events(
                off_topic_prompts(100, seed=3),
                now - HOUR / 2 + 60,
                HOUR / 2 - 120,
                status=200,
                response="I'm sorry, but I can't help with that.",
            )
            await emit(redis, stream_key, off)
            await wait_for(await stored(320))
            with caplog.at_level(logging.WARNING, logger="llmops.feedback.drift"):
                drifted = (await c.get("/v1/drift", params={"current_s": HOUR / 2, "reference_s": HOUR})).json()
            assert drifted["windows"]["current"]["events"] == 100
            emb = drifted["signals"]["prompt_embedding_mmd"]
            assert emb["alert"] and emb["score"] > 3 * emb["threshold"], drifted
            assert drifted["details"]["prompt_embedding_p_value"] < 0.05
            assert "refusal_rate_change" in drifted["alerting"]
            assert not drifted["signals"]["error_rate_change"]["alert"]
            assert any(
                getattr(r, "event", None) == "drift_alert" and getattr(r, "signal", None) == "prompt_embedding_mmd"
                for r in caplog.records
            )
            metrics = (await c.get("/metrics")).text
            assert 'llmops_feedback_drift_alert{scope="all",signal="prompt_embedding_mmd"} 1.0' in metrics
            assert 'llmops_feedback_drift_threshold{signal="prompt_embedding_mmd"} 0.03' in metrics

        async with httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer sk-team-b"}) as c:
            scoped = (await c.get("/v1/drift")).json()  # team-b has no traffic: no scores, no alert
            assert scoped["scope"] == "team-b" and scoped["alerting"] == []
            assert (await c.get("/v1/drift", params={"reference_start": 10})).status_code == 400


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_background_drift_sets_gauges(make_settings: Any, redis: Redis, stream_key: str, embedder: Embed) -> None:
    """The timer computes the all-teams scope and publishes gauges without anyone calling the endpoint."""
    now = time.time()
    events = _events(support_prompts(40, 5), now - 2 * HOUR, HOUR - 1) + _events(
        off_topic_prompts(40, 6), now - HOUR + 1, HOUR - 2, status=503, error_code="upstream_unavailable"
    )
    settings = make_settings(drift_enabled=True, drift_interval_s=0.2, drift_current_s=HOUR, drift_reference_s=HOUR)
    async with serve(create_app(settings, embed=embedder)) as url:
        await emit(redis, stream_key, events)
        async with httpx.AsyncClient(base_url=url) as c:

            async def alerted() -> bool:
                text = (await c.get("/metrics")).text
                return 'llmops_feedback_drift_alert{scope="all",signal="error_rate_change"} 1.0' in text

            await wait_for(alerted)
