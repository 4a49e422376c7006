"""Batch state and worker on a real Redis, with a scripted proxy (the real proxy path is in tests/integration)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from redis.asyncio import Redis

from llmops_common.errors import APIError
from services.gateway.batch import BatchService, BatchStore, BatchWorker, FileLimits, WorkerConfig
from services.gateway.keys import KeyRecord, KeyStore, TeamRecord
from services.gateway.proxy import Completed

LIMITS = FileLimits(max_bytes=1_000_000, max_lines=1000, max_line_body_bytes=10_000)
FAST = WorkerConfig(concurrency=3, poll_s=0.05, lease_s=2, max_retries=3, retry_max_s=0.02, stop_grace_s=2)


class ScriptedProxy:
    """Stands in for ProxyService.forward: answers by custom content, counts calls per prompt."""

    def __init__(self, keys: KeyStore, script: Callable[[str, int], Completed] | None = None, delay: float = 0):
        self.keys = keys
        self.calls: Counter[str] = Counter()
        self.script = script
        self.delay = delay
        self.max_inflight = self.inflight = 0

    async def forward(self, record: KeyRecord, kind: str, raw: bytes, started: float) -> Completed:
        prompt = orjson.loads(raw)["messages"][0]["content"]
        self.calls[prompt] += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(self.delay)
            if self.script is not None:
                return self.script(prompt, self.calls[prompt])
            return ok(prompt)
        finally:
            self.inflight -= 1


def ok(prompt: str) -> Completed:
    body = {
        "choices": [{"message": {"content": prompt.upper()}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    return Completed(200, orjson.dumps(body), {})


def jsonl(n: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": f"p{i}"}]},
            }
        )
        + b"\n"
        for i in range(n)
    )


@pytest.fixture
async def record(store: KeyStore) -> KeyRecord:
    _, rec = await store.create(
        team="alpha", project="p", name="k", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    return rec


@pytest.fixture
def service(redis: Redis, prefix: str) -> BatchService:
    return BatchService(BatchStore(redis, prefix), LIMITS)


async def submit(service: BatchService, record: KeyRecord, n: int) -> str:
    file = await service.upload(record, "in.jsonl", "batch", jsonl(n))
    created = await service.create(
        record, {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    )
    assert created["status"] == "validating" and created["request_counts"]["total"] == n
    return str(created["id"])


async def wait_status(service: BatchService, record: KeyRecord, batch_id: str, *states: str) -> dict:
    for _ in range(400):
        batch = await service.get(record, batch_id)
        if batch["status"] in states:
            return batch
        await asyncio.sleep(0.025)
    raise AssertionError(f"batch stuck in {batch['status']}")


async def run_worker(service: BatchService, proxy: ScriptedProxy, config: WorkerConfig = FAST) -> BatchWorker:
    worker = BatchWorker(service.store, proxy, config)  # type: ignore[arg-type]
    await worker.start()
    return worker


def lines_of(content: bytes) -> list[dict]:
    return [orjson.loads(x) for x in content.splitlines()]


async def test_batch_completes_with_outputs_errors_usage_and_bounded_concurrency(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    def script(prompt: str, _: int) -> Completed:
        if prompt == "p2":  # an engine error that passes through (a non-200 answer)
            return Completed(400, orjson.dumps({"error": {"code": "context_length_exceeded", "message": "long"}}), {})
        if prompt == "p4":
            raise APIError(403, "model_not_allowed", "this key may not use model 'm'")
        return ok(prompt)

    proxy = ScriptedProxy(store, script, delay=0.02)
    batch_id = await submit(service, record, 8)
    worker = await run_worker(service, proxy)
    try:
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    assert batch["request_counts"] == {"total": 8, "completed": 6, "failed": 2}
    assert batch["usage"]["input_tokens"] == 18 and batch["usage"]["output_tokens"] == 12
    assert batch["in_progress_at"] and batch["finalizing_at"] and batch["completed_at"]
    assert 1 < proxy.max_inflight <= 3
    out = lines_of(await service.file_content(record, batch["output_file_id"]))
    assert [x["custom_id"] for x in out] == ["c0", "c1", "c3", "c5", "c6", "c7"]
    assert out[0]["response"]["status_code"] == 200 and out[0]["error"] is None
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "P0"
    assert out[0]["response"]["request_id"].startswith("req_") and out[0]["id"].startswith("batch_req_")
    errors = {x["custom_id"]: x for x in lines_of(await service.file_content(record, batch["error_file_id"]))}
    assert errors["c2"]["error"]["code"] == "context_length_exceeded"
    assert errors["c2"]["response"]["status_code"] == 400
    assert errors["c4"]["error"] == {"code": "model_not_allowed", "message": "this key may not use model 'm'"}
    assert (await service.get_file(record, batch["output_file_id"]))["purpose"] == "batch_output"


async def test_rate_limits_are_retried_and_budget_fails_the_rest(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    def script(prompt: str, call: int) -> Completed:
        if prompt == "p0" and call <= 2:
            raise APIError(429, "key_rpm_exceeded", "wait", headers={"retry-after": "1"})
        if prompt == "p3":
            raise APIError(402, "team_budget_exceeded", "budget of this team exhausted")
        return ok(prompt)

    proxy = ScriptedProxy(store, script)
    batch_id = await submit(service, record, 8)
    worker = await run_worker(service, proxy, WorkerConfig(concurrency=1, poll_s=0.05, lease_s=2, retry_max_s=0.02))
    try:
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    assert proxy.calls["p0"] == 3  # two 429s, then served
    assert batch["request_counts"] == {"total": 8, "completed": 3, "failed": 5}
    errors = lines_of(await service.file_content(record, batch["error_file_id"]))
    assert [e["custom_id"] for e in errors] == ["c3", "c4", "c5", "c6", "c7"]
    assert {e["error"]["code"] for e in errors} == {"team_budget_exceeded"}
    assert sum(proxy.calls[f"p{i}"] for i in range(4, 8)) == 0  # not sent once the budget is gone


async def test_retries_are_bounded(service: BatchService, record: KeyRecord, store: KeyStore) -> None:
    def script(prompt: str, _: int) -> Completed:
        raise APIError(503, "no_deployment_available", "all circuits open")

    proxy = ScriptedProxy(store, script)
    batch_id = await submit(service, record, 1)
    worker = await run_worker(service, proxy)
    try:
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    assert proxy.calls["p0"] == FAST.max_retries + 1
    assert batch["request_counts"]["failed"] == 1


async def test_resume_never_redoes_finished_lines(service: BatchService, record: KeyRecord, store: KeyStore) -> None:
    batch_id = await submit(service, record, 6)
    for index in (0, 2, 5):  # finished before a restart
        first = {"id": "x", "custom_id": f"c{index}", "response": {"status_code": 200, "body": {}}, "error": None}
        assert await service.store.record_line(batch_id, index, first, ok=True)
        assert not await service.store.record_line(batch_id, index, first, ok=True)  # exactly once
    proxy = ScriptedProxy(store)
    worker = await run_worker(service, proxy)
    try:
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    assert sorted(proxy.calls) == ["p1", "p3", "p4"]
    out = lines_of(await service.file_content(record, batch["output_file_id"]))
    assert [x["custom_id"] for x in out] == [f"c{i}" for i in range(6)]


async def test_one_replica_per_batch_and_takeover_after_the_lease(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    batch_id = await submit(service, record, 1)
    # A replica that died holding it. The lease outlives the 0.2 s look below by far, so a starved event loop on
    # a busy machine cannot let it expire (and the worker take over) before the assertion runs.
    assert await service.store.claim(batch_id, "crashed-replica", 1.5)
    proxy = ScriptedProxy(store)
    worker = await run_worker(service, proxy)
    try:
        await asyncio.sleep(0.2)
        assert not proxy.calls  # the lease is still held by the crashed replica
        batch = await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    assert proxy.calls["p0"] == 1 and batch["request_counts"]["completed"] == 1


async def test_cancel_stops_new_lines_and_keeps_results(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    proxy = ScriptedProxy(store, delay=0.1)
    batch_id = await submit(service, record, 40)
    worker = await run_worker(service, proxy, WorkerConfig(concurrency=2, poll_s=0.05, lease_s=2))
    try:
        await wait_status(service, record, batch_id, "in_progress")
        await asyncio.sleep(0.3)
        assert (await service.cancel(record, batch_id))["status"] == "cancelling"
        batch = await wait_status(service, record, batch_id, "cancelled")
    finally:
        await worker.stop()
    done = batch["request_counts"]["completed"]
    assert 0 < done < 40 and sum(proxy.calls.values()) == done
    assert len(lines_of(await service.file_content(record, batch["output_file_id"]))) == done
    with pytest.raises(APIError) as err:
        await service.cancel(record, await submit_and_finish(service, record, store))
    assert err.value.status == 409 and err.value.code == "batch_not_cancellable"


async def submit_and_finish(service: BatchService, record: KeyRecord, store: KeyStore) -> str:
    batch_id = await submit(service, record, 1)
    worker = await run_worker(service, ScriptedProxy(store))
    try:
        await wait_status(service, record, batch_id, "completed")
    finally:
        await worker.stop()
    return batch_id


async def test_other_teams_get_404_and_create_is_checked(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    await store.upsert_team(TeamRecord("beta"))
    _, other = await store.create(
        team="beta", project="p", name="k", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    file = await service.upload(record, "in.jsonl", "batch", jsonl(2))
    batch_id = await submit(service, record, 1)
    for call in (
        service.get(other, batch_id),
        service.cancel(other, batch_id),
        service.get_file(other, file["id"]),
        service.file_content(other, file["id"]),
    ):
        with pytest.raises(APIError) as err:
            await call
        assert err.value.status == 404
    assert (await service.list(other, None, 20))["data"] == []
    assert [b["id"] for b in (await service.list(record, None, 20))["data"]] == [batch_id]
    bad = [
        ({"endpoint": "/v1/completions", "completion_window": "24h"}, "endpoint_mismatch"),
        ({"endpoint": "/v1/embeddings", "completion_window": "24h"}, "invalid_endpoint"),
        ({"endpoint": "/v1/chat/completions", "completion_window": "1h"}, "invalid_completion_window"),
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {"k": 1}}, "invalid_metadata"),
    ]
    for body, code in bad:
        with pytest.raises(APIError) as err:
            await service.create(record, {"input_file_id": file["id"], **body})
        assert (err.value.status, err.value.code) == (400, code)
    with pytest.raises(APIError) as err:
        await service.upload(record, "x.jsonl", "fine-tune", jsonl(1))
    assert err.value.code == "invalid_purpose"
    assert (await service.file_content(record, file["id"])).count(b"\n") == 2


async def test_two_live_replicas_share_batches_without_running_a_line_twice(
    service: BatchService, record: KeyRecord, store: KeyStore
) -> None:
    proxy = ScriptedProxy(store, delay=0.01)
    ids = [await submit(service, record, 12) for _ in range(3)]
    workers = [await run_worker(service, proxy), await run_worker(service, proxy)]
    try:
        for batch_id in ids:
            assert (await wait_status(service, record, batch_id, "completed"))["request_counts"]["completed"] == 12
    finally:
        for worker in workers:
            await worker.stop()
    assert set(proxy.calls.values()) == {3}  # p0..p11 once per batch, three batches
