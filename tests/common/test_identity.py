"""The shared gateway-identity client against a FAKE gateway (in-process fake HTTP) and the real Redis change feed."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from llmops_common.errors import APIError
from llmops_common.http import Reply
from llmops_common.identity import GATEWAY_UNAVAILABLE, GatewayIdentity, GatewayUnavailable, Rejected, key_digest
from tests.support.fake_http import FakeAsyncHTTP, Sent, reply

REDIS_URL = "redis://127.0.0.1:6379/0"
ME = {"key_id": "k1", "team": "t1", "project": "p1", "allowed_models": ["m"]}


def fake_gateway(calls: list[str], revoked: set[str] | None = None) -> FakeAsyncHTTP:
    """A gateway answering /v1/me: 'good*' keys are t1's, 'down' is a 500, anything else a 401."""

    def handler(request: Sent) -> Reply:
        key = request.headers["authorization"].removeprefix("Bearer ")
        calls.append(key)
        if key == "down":
            return Reply(500, {}, b"")
        if key in (revoked or set()):
            return reply(401, {"error": {"code": "revoked_api_key", "message": "revoked"}})
        if key.startswith("good"):
            return reply(200, ME)
        return reply(401, {"error": {"code": "invalid_api_key", "message": "bad key"}})

    return FakeAsyncHTTP(handler)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_without_a_feed_nothing_is_cached() -> None:
    """No Redis configured: every lookup asks the gateway (correct, if slower)."""
    calls: list[str] = []
    identity = GatewayIdentity("http://gw", ttl_s=60, http=fake_gateway(calls))
    for _ in range(3):
        who = await identity.resolve("good")
        assert who is not None and (who.team, who.project, who.key_id) == ("t1", "p1", "k1")
        assert who.principal == "t1/p1/k1" and who.allowed_models == ("m",)
    assert calls == ["good"] * 3 and len(identity.cache) == 0
    await identity.aclose()


async def test_feed_down_means_no_cache() -> None:
    """The feed's Redis is unreachable: start() returns, lookups work, nothing is cached."""
    calls: list[str] = []
    identity = GatewayIdentity(
        "http://gw", redis_url=f"redis://127.0.0.1:{closed_port()}/0", ttl_s=60, http=fake_gateway(calls)
    )
    await identity.start(wait_s=0.3)
    assert not identity.cache.live
    await identity.resolve("good")
    await identity.resolve("good")
    assert calls == ["good", "good"] and len(identity.cache) == 0
    await identity.aclose()


async def test_errors_and_the_one_unavailable_code() -> None:
    """Missing header 401, the gateway's own refusal code passed on, and gateway_unavailable (503) for the rest."""
    calls: list[str] = []
    identity = GatewayIdentity("http://gw", http=fake_gateway(calls, revoked={"old"}))
    with pytest.raises(APIError) as err:
        await identity.authenticate(None)
    assert (err.value.status, err.value.code) == (401, "missing_api_key")
    with pytest.raises(APIError) as err:
        await identity.authenticate("Bearer old")
    assert (err.value.status, err.value.code) == (401, "revoked_api_key")
    assert await identity.lookup("nope") == Rejected("invalid_api_key", "bad key")
    assert await identity.resolve("nope") is None
    with pytest.raises(GatewayUnavailable):
        await identity.resolve("down")
    with pytest.raises(APIError) as err:
        await identity.authenticate("Bearer down")
    assert (err.value.status, err.value.code) == (503, GATEWAY_UNAVAILABLE)
    assert err.value.headers["retry-after"]
    assert (await identity.authenticate("bearer good")).team == "t1"
    await identity.aclose()

    unreachable = GatewayIdentity(f"http://127.0.0.1:{closed_port()}", timeout_s=2)  # a real client, refused
    with pytest.raises(GatewayUnavailable):
        await unreachable.lookup("good")
    await unreachable.aclose()


async def test_an_answer_in_flight_during_a_change_is_not_kept() -> None:
    """A key changed while its /v1/me answer was on the way: that (possibly stale) answer is not cached."""
    identity: GatewayIdentity | None = None

    def handler(request: Sent) -> Reply:
        assert identity is not None
        identity.cache.forget(key_digest("good"))  # the gateway announced a change meanwhile
        return reply(200, ME)

    identity = GatewayIdentity("http://gw", ttl_s=60, http=FakeAsyncHTTP(handler))
    identity.cache.live = True
    await identity.resolve("good")
    assert len(identity.cache) == 0
    await identity.aclose()


async def _eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not within the time limit"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.integration
async def test_real_feed_caches_per_digest_and_forgets_announced_keys() -> None:
    """Answers (401s too) are cached under the key's digest only; the gateway's announcement drops one at once."""
    prefix = f"test:identity:{uuid.uuid4().hex[:8]}"
    calls: list[str] = []
    revoked: set[str] = set()
    redis = Redis.from_url(REDIS_URL)
    identity = GatewayIdentity("http://gw", redis=redis, prefix=prefix, ttl_s=60, http=fake_gateway(calls, revoked))
    try:
        await identity.start()
        assert identity.cache.live
        for _ in range(3):
            assert await identity.resolve("good") is not None
            assert await identity.resolve("bad") is None
        assert calls == ["good", "bad"]
        assert set(identity.cache._entries) == {key_digest("good"), key_digest("bad")}  # never a raw key
        revoked.add("good")
        await redis.publish(f"{prefix}:keys:changed", key_digest("good"))  # what the gateway's revoke sends
        await _eventually(lambda: key_digest("good") not in identity.cache._entries)
        assert await identity.resolve("good") is None
        assert await identity.resolve("bad") is None  # the other entry stayed cached
        assert calls == ["good", "bad", "good"]
    finally:
        await identity.aclose()
        await redis.aclose()
    assert not identity.cache.live and len(identity.cache) == 0
