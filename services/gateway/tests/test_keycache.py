"""The key-record cache: served from memory, and every replica forgets a record as soon as it changes."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from services.gateway.keycache import KeyCache, KeyChangeListener
from services.gateway.keys import KeyRecord, KeyStore, TeamRecord, hash_key


def _record(key_id: str = "key_1", status: str = "active") -> KeyRecord:
    return KeyRecord(key_id=key_id, team="alpha", project="p", name="n", key_hint="h", status=status)


def test_cache_keeps_nothing_without_a_live_change_feed() -> None:
    cache = KeyCache(ttl_s=60)
    cache.put("d", _record(), cache.generation)
    assert cache.get("d") is None  # no listener: a change could be missed, so nothing is kept
    cache.live = True
    cache.put("d", _record(), cache.generation)
    assert cache.get("d") is not None


def test_ttl_zero_turns_caching_off() -> None:
    cache = KeyCache(ttl_s=0)
    cache.live = True
    cache.put("d", _record(), cache.generation)
    assert cache.get("d") is None


def test_entries_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = KeyCache(ttl_s=5)
    cache.live = True
    now = time.monotonic()
    monkeypatch.setattr("llmops_common.feed_cache.time.monotonic", lambda: now)
    cache.put("d", _record(), cache.generation)
    monkeypatch.setattr("llmops_common.feed_cache.time.monotonic", lambda: now + 4.9)
    assert cache.get("d") is not None
    monkeypatch.setattr("llmops_common.feed_cache.time.monotonic", lambda: now + 5.1)
    assert cache.get("d") is None


def test_a_read_that_raced_a_change_is_not_stored() -> None:
    cache = KeyCache(ttl_s=60)
    cache.live = True
    generation = cache.generation  # a lookup starts reading Redis ...
    cache.forget("d")  # ... the record changes meanwhile ...
    cache.put("d", _record(), generation)  # ... so what it read may be the old record
    assert cache.get("d") is None


def test_least_recently_used_entries_are_evicted_at_the_bound() -> None:
    cache = KeyCache(ttl_s=60, max_entries=2)
    cache.live = True
    for digest in ("a", "b"):
        cache.put(digest, _record(digest), cache.generation)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", _record("c"), cache.generation)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


async def _replica(redis: Redis, prefix: str) -> tuple[KeyStore, KeyChangeListener]:
    cache = KeyCache(ttl_s=300)  # long TTL: only the change feed can make the replica see a change
    store = KeyStore(redis, prefix, cache)
    listener = KeyChangeListener(redis, store.changes_channel, cache)
    await listener.start()
    assert listener.subscribed.is_set()
    return store, listener


async def _eventually(check, timeout_s: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_revocation_on_one_replica_reaches_the_other_at_once(redis: Redis, prefix: str) -> None:
    a, listener_a = await _replica(redis, prefix)
    b, listener_b = await _replica(redis, prefix)
    try:
        await a.upsert_team(TeamRecord("alpha"))
        plaintext, record = await a.create(
            team="alpha", project="p", name="n", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
        )
        # Both replicas have the key cached.
        assert (await a.lookup(plaintext)).status == "active"  # type: ignore[union-attr]
        assert (await b.lookup(plaintext)).status == "active"  # type: ignore[union-attr]
        assert hash_key(plaintext) in b.cache._entries

        await a.update(record.key_id, {"status": "revoked"})
        # The writer's own cache never serves the old record after the write returned ...
        assert (await a.lookup(plaintext)).status == "revoked"  # type: ignore[union-attr]

        # ... and the other replica drops its copy when the change message arrives (a 300 s TTL would not).
        async def b_sees_revoked() -> bool:
            found = await b.lookup(plaintext)
            return found is not None and found.status == "revoked"

        assert await _eventually(b_sees_revoked)
    finally:
        await listener_a.stop()
        await listener_b.stop()


async def test_limit_changes_reach_other_replicas(redis: Redis, prefix: str) -> None:
    a, listener_a = await _replica(redis, prefix)
    b, listener_b = await _replica(redis, prefix)
    try:
        await a.upsert_team(TeamRecord("alpha"))
        plaintext, record = await a.create(
            team="alpha", project="p", name="n", allowed_models=["m1"], rpm_limit=10, tpm_limit=None, budget_nusd=None
        )
        assert (await b.lookup(plaintext)).rpm_limit == 10  # type: ignore[union-attr]
        await a.update(record.key_id, {"rpm_limit": 1, "allowed_models": ["m2"]})

        async def b_sees_new_policy() -> bool:
            found = await b.lookup(plaintext)
            return found is not None and found.rpm_limit == 1 and found.allowed_models == ["m2"]

        assert await _eventually(b_sees_new_policy)
    finally:
        await listener_a.stop()
        await listener_b.stop()


async def test_stopped_listener_leaves_no_cache_behind(redis: Redis, prefix: str) -> None:
    store, listener = await _replica(redis, prefix)
    await store.upsert_team(TeamRecord("alpha"))
    plaintext, _ = await store.create(
        team="alpha", project="p", name="n", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    await store.lookup(plaintext)
    assert len(store.cache) == 1
    await listener.stop()
    assert store.cache.live is False
    assert len(store.cache) == 0
    # Without the feed the record is read from Redis each time and not kept.
    assert (await store.lookup(plaintext)) is not None
    assert len(store.cache) == 0
