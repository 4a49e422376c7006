"""Issue 12, row 10: a team's batch-file storage cap (GATEWAY_TEAM_FILE_BYTES_MAX) holds under concurrent uploads.

The cap used to be check-then-write: uploads racing each other all read the same usage and all passed. Now each
file reserves its bytes atomically in Redis; the reservation goes back on a failed write, a delete and expiry."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from redis.asyncio import Redis

from llmops_common.errors import APIError
from services.gateway.batch import BatchService, BatchStore
from services.gateway.keys import KeyRecord
from services.gateway.tests.test_batch_worker import LIMITS, jsonl, record  # noqa: F401 - fixture used by name

FILE = jsonl(3)  # every upload below is this file: the cap is a whole number of them plus a bit
CAP = 3 * len(FILE) + len(FILE) // 2


@pytest.fixture
def batch_store(redis: Redis, prefix: str) -> BatchStore:
    return BatchStore(redis, prefix, retention_s=7200)


@pytest.fixture
def service(batch_store: BatchStore) -> BatchService:
    return BatchService(batch_store, dataclasses.replace(LIMITS, team_max_bytes=CAP))


async def stored_bytes(redis: Redis, prefix: str, team: str) -> int:
    """The bytes of the team's files that really are in Redis (read from the files, not the counter)."""
    total = 0
    for file_id in await redis.zrange(f"{prefix}:batch:team:{team}:files", 0, -1):
        size = await redis.hget(f"{prefix}:batch:file:{file_id}", "bytes")
        total += int(size or 0)
    return total


async def test_concurrent_uploads_past_the_team_cap_admit_exactly_those_that_fit(
    service: BatchService,
    batch_store: BatchStore,
    record: KeyRecord,  # noqa: F811
    redis: Redis,
    prefix: str,
) -> None:
    outcomes = await asyncio.gather(
        *(service.upload(record, f"in{i}.jsonl", "batch", FILE) for i in range(12)), return_exceptions=True
    )
    admitted = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, APIError)]
    assert len(admitted) == 3, outcomes  # CAP holds three and a half files: three fit, whatever the interleaving
    assert len(refused) == 9 and {(e.status, e.code) for e in refused} == {(413, "team_storage_full")}
    assert await batch_store.quota.used(record.team) == 3 * len(FILE) == await stored_bytes(redis, prefix, record.team)


async def test_a_failed_write_gives_the_reservation_back(
    service: BatchService,
    batch_store: BatchStore,
    record: KeyRecord,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: object) -> None:
        raise ConnectionError("redis went away mid-write")

    monkeypatch.setattr(batch_store, "add_input_file", broken)
    with pytest.raises(ConnectionError):
        await service.upload(record, "in.jsonl", "batch", FILE)
    assert await batch_store.quota.used(record.team) == 0


async def test_delete_and_expiry_release_the_bytes(
    service: BatchService,
    batch_store: BatchStore,
    record: KeyRecord,  # noqa: F811
    redis: Redis,
    prefix: str,
) -> None:
    files = [await service.upload(record, f"in{i}.jsonl", "batch", FILE) for i in range(3)]
    with pytest.raises(APIError):
        await service.upload(record, "one-too-many.jsonl", "batch", FILE)
    await service.delete_file(record, files[0]["id"])
    assert await batch_store.quota.used(record.team) == 2 * len(FILE)
    await service.upload(record, "fits-again.jsonl", "batch", FILE)

    # Expiry: Redis drops the file's keys by itself; the reservation ends at the same time.
    expired = files[1]["id"]
    past = int(time.time()) - 1
    await redis.zadd(batch_store.quota.keys(record.team)[1], {expired: past})
    await redis.delete(f"{prefix}:batch:file:{expired}", f"{prefix}:batch:file:{expired}:lines")
    assert await batch_store.quota.used(record.team) == 2 * len(FILE) == await stored_bytes(redis, prefix, record.team)
    await service.upload(record, "fits-after-expiry.jsonl", "batch", FILE)


async def test_files_stored_before_the_counter_are_adopted_once(
    service: BatchService,
    batch_store: BatchStore,
    record: KeyRecord,  # noqa: F811
    redis: Redis,
) -> None:
    """A gateway upgraded over a Redis that already holds files starts counting from what is stored."""
    await service.upload(record, "old.jsonl", "batch", FILE)
    await redis.delete(*batch_store.quota.keys(record.team))  # as before the counter existed
    await service.upload(record, "new.jsonl", "batch", FILE)
    assert await batch_store.quota.used(record.team) == 2 * len(FILE)
