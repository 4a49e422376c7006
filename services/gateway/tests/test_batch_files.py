"""Batch files on a real Redis: deletion (409 while a batch needs the file, 404 across teams) and expiry."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from llmops_common.errors import APIError
from services.gateway.batch import BatchService, BatchStore
from services.gateway.keys import KeyRecord, KeyStore, TeamRecord
from services.gateway.proxy import Completed
from services.gateway.tests.test_batch_worker import (  # noqa: F401 - fixtures used by name
    LIMITS,
    ScriptedProxy,
    jsonl,
    lines_of,
    ok,
    record,
    run_worker,
    submit,
    wait_status,
)

RETENTION = 7200


@pytest.fixture
def service(redis: Redis, prefix: str) -> BatchService:
    return BatchService(BatchStore(redis, prefix, retention_s=RETENTION), LIMITS)


@pytest.fixture
async def stranger(store: KeyStore) -> KeyRecord:
    await store.upsert_team(TeamRecord("beta"))
    _, rec = await store.create(
        team="beta", project="p", name="k", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    return rec


async def keys_of(redis: Redis, prefix: str, ident: str) -> list[str]:
    return [k async for k in redis.scan_iter(match=f"{prefix}:*{ident}*", count=1000)]


async def expect_error(call: object, status: int, code: str) -> APIError:
    with pytest.raises(APIError) as err:
        await call  # type: ignore[misc]
    assert (err.value.status, err.value.code) == (status, code), err.value.message
    return err.value


async def test_deleting_an_input_file_removes_it_and_its_lines(
    service: BatchService,
    record: KeyRecord,  # noqa: F811
    stranger: KeyRecord,
    redis: Redis,
    prefix: str,
) -> None:
    kept = await service.upload(record, "kept.jsonl", "batch", jsonl(1))
    file = await service.upload(record, "in.jsonl", "batch", jsonl(3))
    await expect_error(service.delete_file(stranger, file["id"]), 404, "file_not_found")
    assert (await service.get_file(record, file["id"]))["id"] == file["id"]  # the stranger changed nothing
    assert await service.delete_file(record, file["id"]) == {"id": file["id"], "object": "file", "deleted": True}
    await expect_error(service.get_file(record, file["id"]), 404, "file_not_found")
    await expect_error(service.file_content(record, file["id"]), 404, "file_not_found")
    await expect_error(service.delete_file(record, file["id"]), 404, "file_not_found")
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    await expect_error(service.create(record, body), 404, "file_not_found")
    assert [f["id"] for f in (await service.list_files(record, 100))["data"]] == [kept["id"]]
    assert await keys_of(redis, prefix, file["id"]) == []  # metadata, lines, listing entry: nothing left


async def test_a_file_in_use_by_a_batch_that_has_not_ended_is_409(
    service: BatchService,
    record: KeyRecord,  # noqa: F811
    store: KeyStore,
) -> None:
    batch_id = await submit(service, record, 2)  # no worker yet: the batch stays `validating`
    input_id = (await service.get(record, batch_id))["input_file_id"]
    error = await expect_error(service.delete_file(record, input_id), 409, "file_in_use")
    assert batch_id in error.message and "validating" in error.message
    assert (await service.file_content(record, input_id)).count(b"\n") == 2  # untouched
    await service.cancel(record, batch_id)
    await expect_error(service.delete_file(record, input_id), 409, "file_in_use")  # cancelling is not ended
    worker = await run_worker(service, ScriptedProxy(store))
    try:
        await wait_status(service, record, batch_id, "cancelled")
    finally:
        await worker.stop()
    assert (await service.delete_file(record, input_id))["deleted"] is True
    assert (await service.get(record, batch_id))["input_file_id"] == input_id  # the batch still names it


async def test_result_files_can_be_deleted_and_the_batch_keeps_its_counts(
    service: BatchService,
    record: KeyRecord,  # noqa: F811
    stranger: KeyRecord,
    store: KeyStore,
) -> None:
    def script(prompt: str, _: int) -> Completed:
        if prompt == "p1":
            raise APIError(403, "model_not_allowed", "no")
        return ok(prompt)

    batch_id = await submit(service, record, 3)
    worker = await run_worker(service, ScriptedProxy(store, script))
    try:
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    counts = {"total": 3, "completed": 2, "failed": 1}
    assert batch["request_counts"] == counts
    for file_id in (batch["output_file_id"], batch["error_file_id"], batch["input_file_id"]):
        await expect_error(service.delete_file(stranger, file_id), 404, "file_not_found")
    assert (await service.delete_file(record, batch["output_file_id"]))["deleted"] is True
    await expect_error(service.file_content(record, batch["output_file_id"]), 404, "file_not_found")
    assert [x["custom_id"] for x in lines_of(await service.file_content(record, batch["error_file_id"]))] == ["c1"]
    assert (await service.get(record, batch_id))["request_counts"] == counts
    assert (await service.delete_file(record, batch["input_file_id"]))["deleted"] is True


async def test_files_and_finished_batches_expire(
    service: BatchService,
    record: KeyRecord,  # noqa: F811
    store: KeyStore,
    redis: Redis,
    prefix: str,
) -> None:
    p = f"{prefix}:batch"
    file = await service.upload(record, "in.jsonl", "batch", jsonl(2))
    assert file["expires_at"] == file["created_at"] + RETENTION
    for key in (f"{p}:file:{file['id']}", f"{p}:file:{file['id']}:lines"):
        assert RETENTION - 5 <= await redis.ttl(key) <= RETENTION
    created = await service.create(
        record, {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    )
    # The input outlives the batch's completion window (plus the retention), whatever its own expiry was.
    extended = created["expires_at"] + RETENTION
    assert (await service.get_file(record, file["id"]))["expires_at"] == extended
    for key in (f"{p}:file:{file['id']}", f"{p}:file:{file['id']}:lines", f"{p}:file:{file['id']}:batches"):
        assert abs(await redis.ttl(key) - (extended - time.time())) <= 5
    worker = await run_worker(service, ScriptedProxy(store))
    try:
        batch = await wait_status(service, record, created["id"], "completed")
    finally:
        await worker.stop()
    output = await service.get_file(record, batch["output_file_id"])
    assert output["expires_at"] == output["created_at"] + RETENTION
    batch_key = f"{p}:b:{created['id']}"
    for key in (batch_key, f"{batch_key}:out", f"{p}:file:{batch['output_file_id']}"):
        assert RETENTION - 5 <= await redis.ttl(key) <= RETENTION, key
    # Expired keys leave the team listings as they are read.
    await redis.delete(f"{p}:file:{file['id']}", batch_key)
    assert file["id"] not in {f["id"] for f in (await service.list_files(record, 100))["data"]}
    assert await redis.zscore(f"{p}:team:alpha:files", file["id"]) is None
    assert (await service.list(record, None, 20))["data"] == []
    assert await redis.zcard(f"{p}:team:alpha:batches") == 0


async def test_expires_after_is_honoured_and_checked(
    service: BatchService,
    record: KeyRecord,  # noqa: F811
    redis: Redis,
    prefix: str,
) -> None:
    file = await service.upload(record, "in.jsonl", "batch", jsonl(1), {"anchor": "created_at", "seconds": 3600})
    assert file["expires_at"] == file["created_at"] + 3600
    assert 3595 <= await redis.ttl(f"{prefix}:batch:file:{file['id']}") <= 3600
    for bad in (
        {"anchor": "created_at", "seconds": 60},
        {"anchor": "created_at", "seconds": 31 * 24 * 3600},
        {"anchor": "last_active_at", "seconds": 3600},
        {"anchor": "created_at", "seconds": "soon"},
        {"anchor": "created_at"},
    ):
        await expect_error(service.upload(record, "x.jsonl", "batch", jsonl(1), bad), 400, "invalid_expires_after")
    assert [f["id"] for f in (await service.list_files(record, 100))["data"]] == [file["id"]]  # nothing else stored
