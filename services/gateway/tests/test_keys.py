"""Virtual keys: stored hashed, plaintext shown once, revocation immediate, teams required."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from services.gateway.keys import KEY_PREFIX, KeyStore, TeamNotFound, hash_key


async def test_key_is_stored_hashed_and_found_by_plaintext(store: KeyStore, redis: Redis, prefix: str) -> None:
    plaintext, record = await store.create(
        team="alpha", project="web", name="ci", allowed_models=["m1"], rpm_limit=5, tpm_limit=None, budget_nusd=7
    )
    assert plaintext.startswith(KEY_PREFIX) and len(plaintext) > 40
    dump = [await redis.dump(k) async for k in redis.scan_iter(match=f"{prefix}:*")]
    assert not any(plaintext.encode() in (d or b"") for d in dump), "plaintext must never be stored"
    assert await redis.exists(f"{prefix}:keyrec:{hash_key(plaintext)}")
    found = await store.lookup(plaintext)
    assert found is not None
    assert (found.key_id, found.team, found.project, found.rpm_limit, found.tpm_limit, found.budget_nusd) == (
        record.key_id,
        "alpha",
        "web",
        5,
        None,
        7,
    )
    assert found.allows("m1") and not found.allows("m2")
    assert await store.lookup(plaintext + "x") is None


async def test_revoke_and_update(store: KeyStore) -> None:
    plaintext, record = await store.create(
        team="alpha", project="p", name="", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    await store.update(record.key_id, {"status": "revoked", "rpm_limit": 3})
    found = await store.lookup(plaintext)
    assert found is not None and found.status == "revoked" and found.rpm_limit == 3


async def test_key_needs_existing_team(store: KeyStore) -> None:
    with pytest.raises(TeamNotFound):
        await store.create(
            team="ghost", project="p", name="", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
        )


async def test_seeding_a_known_key_is_idempotent(store: KeyStore) -> None:
    first = await store.create(
        team="alpha",
        project="p",
        name="demo",
        allowed_models=[],
        rpm_limit=1,
        tpm_limit=None,
        budget_nusd=None,
        plaintext="sk-llmops-demo",
    )
    second = await store.create(
        team="alpha",
        project="p",
        name="demo",
        allowed_models=[],
        rpm_limit=2,
        tpm_limit=None,
        budget_nusd=None,
        plaintext="sk-llmops-demo",
    )
    assert first[1].key_id == second[1].key_id
    assert len(await store.list_keys("alpha")) == 1
