"""The background worker: claims batches (one replica per batch, by lease), sends each unfinished line through
the same ProxyService.forward as online traffic with bounded concurrency, and finalizes the output files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from llmops_common.errors import APIError, error_body
from llmops_common.request_id import bind_request_id, new_request_id  # a line is a request: give it an id
from services.gateway.batch.jsonl import line_request
from services.gateway.batch.store import TERMINAL_STATES, BatchStore, new_id
from services.gateway.keys import KeyNotFound, KeyRecord
from services.gateway.proxy import Completed, ProxyService

log = logging.getLogger("llmops.gateway.batch")
RETRYABLE = (429, 502, 503)  # limits and "no deployment right now": wait, do not fail the line
CHUNK = 256  # lines read from Redis at a time


@dataclass(frozen=True)
class WorkerConfig:
    """How hard the worker pushes and how it shares batches with other replicas."""

    concurrency: int = 4
    poll_s: float = 1.0
    lease_s: float = 30.0
    max_retries: int = 20
    retry_max_s: float = 60.0
    stop_grace_s: float = 10.0


@dataclass
class _Run:
    """One batch being processed by this replica."""

    batch: dict[str, Any]
    record: KeyRecord | None = None
    fatal: APIError | None = None  # a budget error: the remaining lines fail with it
    lost: bool = False  # the lease went to another replica
    stop_reason: str | None = None  # "cancelling" or "expired"
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


class BatchWorker:
    """Processes queued batches in the background; start() and stop() from the app's lifespan."""

    def __init__(
        self, store: BatchStore, proxy: ProxyService, config: WorkerConfig, lines: Counter | None = None
    ) -> None:
        self.store = store
        self.proxy = proxy
        self.config = config
        self.owner = "gw-" + secrets.token_hex(6)
        self._slots = asyncio.Semaphore(config.concurrency)  # shared by every batch on this replica
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.lines = lines or self.lines_counter(CollectorRegistry())

    @staticmethod
    def lines_counter(registry: CollectorRegistry) -> Counter:
        """The worker's series; created with the app (not in the lifespan) so it is registered once."""
        return Counter(
            "llmops_gateway_batch_lines_total",
            "Batch lines processed, by outcome (ok|error|retry).",
            ["outcome"],
            registry=registry,
        )

    async def start(self) -> None:
        """Begin polling for batches."""
        self._loop_task = asyncio.create_task(self._poll(), name="batch-worker")

    async def stop(self) -> None:
        """Stop claiming; let lines in flight finish (bounded), then release the leases for another replica."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        runs = list(self._runs.values())
        if runs:
            _, pending = await asyncio.wait(runs, timeout=self.config.stop_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _poll(self) -> None:
        while not self._stopping:
            try:
                for batch_id in await self.store.active():
                    if batch_id not in self._runs and await self.store.claim(batch_id, self.owner, self.config.lease_s):
                        self._runs[batch_id] = asyncio.create_task(self._run(batch_id), name=f"batch-{batch_id}")
            except (RedisError, OSError) as exc:  # Redis blips: try again next tick
                log.warning("batch poll failed: %s", exc)
            await asyncio.sleep(self.config.poll_s)

    async def _run(self, batch_id: str) -> None:
        run = _Run(batch={})
        renew = asyncio.create_task(self._renew(batch_id, run))
        try:
            await self._process(batch_id, run)
        except (RedisError, OSError) as exc:  # the lease lapses or is released; a later poll resumes the batch
            log.warning("batch %s interrupted: %s", batch_id, exc)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await renew
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self.store.release(batch_id, self.owner))
            self._runs.pop(batch_id, None)

    async def _renew(self, batch_id: str, run: _Run) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            if not await self.store.renew(batch_id, self.owner, self.config.lease_s):
                log.warning("lost the lease of batch %s; another replica continues it", batch_id)
                run.lost = True
                return

    async def _process(self, batch_id: str, run: _Run) -> None:
        batch = await self.store.get_batch(batch_id)
        if batch is None or batch["status"] in TERMINAL_STATES:
            await self.store.deactivate(batch_id)
            return
        run.batch = batch
        if batch["status"] == "validating":
            await self.store.transition(batch_id, "in_progress", "validating")
        elif batch["status"] == "cancelling":
            run.stop_reason = "cancelling"
        try:
            run.record = await self.proxy.keys.get(batch["key_id"])
        except KeyNotFound:
            run.fatal = APIError(401, "invalid_api_key", "the key that created this batch no longer exists")
        if run.record is not None and run.record.status != "active":
            run.fatal = APIError(401, "revoked_api_key", "the key that created this batch has been revoked")
        done = await self.store.done_lines(batch_id)
        next_check = 0.0
        for start in range(0, int(batch["total"]), CHUNK):
            lines = await self.store.input_lines(batch["input_file_id"], start, start + CHUNK - 1)
            for offset, line in enumerate(lines):
                index = start + offset
                if index in done:
                    continue
                if time.monotonic() >= next_check:  # a poll per half second, not per line
                    next_check = time.monotonic() + 0.5
                    await self._check_status(batch_id, run)
                if self._stopping or run.lost or run.stop_reason:
                    break
                await self._slots.acquire()
                task = asyncio.create_task(self._line(batch_id, run, index, line))
                run.inflight.add(task)
                task.add_done_callback(self._line_done(run))
            else:
                continue
            break
        if run.inflight:
            for failure in await asyncio.gather(*run.inflight, return_exceptions=True):
                if isinstance(failure, Exception):  # e.g. Redis down while recording: the line stays unmarked
                    log.warning("batch %s: a line was not recorded: %s", batch_id, failure)
        if self._stopping or run.lost:
            return  # unfinished lines stay unmarked: whoever resumes does them
        if run.stop_reason is None and len(await self.store.done_lines(batch_id)) < int(batch["total"]):
            return  # some line failed to record; the next poll claims the batch again and redoes only those
        if run.stop_reason == "expired":
            await self._expire_rest(batch_id, run)
        await self._finalize(batch_id, run)

    def _line_done(self, run: _Run) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            run.inflight.discard(task)
            self._slots.release()

        return done

    async def _check_status(self, batch_id: str, run: _Run) -> None:
        status = (await self.store.get_batch(batch_id) or {}).get("status")
        if status == "cancelling":
            run.stop_reason = "cancelling"
        elif time.time() > float(run.batch.get("expires_at") or 1e18):
            run.stop_reason = "expired"

    async def _line(self, batch_id: str, run: _Run, index: int, line: str) -> None:
        """Send one line through the proxy and record its output or error exactly once."""
        custom_id, kind, raw = line_request(line)
        rid = new_request_id()
        bind_request_id(rid)  # this task's own context: the trace event and errors carry the line's id
        result: Completed | None = None
        for attempt in range(self.config.max_retries + 1):
            if run.fatal is not None:
                await self._error(batch_id, index, custom_id, rid, run.fatal)
                return
            try:
                forwarded = await self.proxy.forward(run.record, kind, raw, time.perf_counter())  # type: ignore[arg-type]
            except APIError as exc:
                if exc.status in RETRYABLE and attempt < self.config.max_retries:
                    if self._stopping or run.lost:
                        return  # left unmarked: resumed later
                    self.lines.labels("retry").inc()
                    await asyncio.sleep(self._backoff(attempt, exc))
                    continue
                if exc.status == 402:
                    run.fatal = exc
                await self._error(batch_id, index, custom_id, rid, exc)
                return
            except Exception as exc:  # a bug must fail one line visibly, never the whole batch
                log.exception("batch %s line %d failed unexpectedly", batch_id, index)
                await self._error(batch_id, index, custom_id, rid, APIError(500, "internal_error", str(exc)))
                return
            if isinstance(forwarded, Completed):
                result = forwarded
            break
        if result is None:  # streaming is refused at upload, so this is a broken invariant
            await self._error(batch_id, index, custom_id, rid, APIError(500, "internal_error", "unexpected stream"))
            return
        body = orjson.loads(result.body)
        response = {"status_code": result.status, "request_id": rid, "body": body}
        if result.status == 200:
            usage = body.get("usage") or {}
            tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            out = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": None}
            await self.store.record_line(batch_id, index, out, ok=True, tokens=tokens)
            self.lines.labels("ok").inc()
            return
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        error = {"code": err.get("code") or "upstream_error", "message": err.get("message") or str(body)[:500]}
        out = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": error}
        await self.store.record_line(batch_id, index, out, ok=False)
        self.lines.labels("error").inc()

    async def _error(self, batch_id: str, index: int, custom_id: str, rid: str, exc: APIError) -> None:
        body = error_body(exc.status, exc.code, exc.message, exc.param, **exc.extra)
        out = {
            "id": new_id("batch_req_"),
            "custom_id": custom_id,
            "response": {"status_code": exc.status, "request_id": rid, "body": body},
            "error": {"code": exc.code, "message": exc.message},
        }
        await self.store.record_line(batch_id, index, out, ok=False)
        self.lines.labels("error").inc()

    def _backoff(self, attempt: int, exc: APIError) -> float:
        """Retry-After when the limiter gave one, else exponential; jittered so lines do not retry in lockstep."""
        hinted = exc.headers.get("retry-after")
        base = float(hinted) if hinted and hinted.isdigit() else 0.5 * 2**attempt
        return min(self.config.retry_max_s, base) * random.uniform(0.8, 1.2)

    async def _expire_rest(self, batch_id: str, run: _Run) -> None:
        """Lines not started before the completion window closed go to the error file as batch_expired."""
        done = await self.store.done_lines(batch_id)
        expired = APIError(400, "batch_expired", "the batch's completion window ended before this line ran")
        lines = await self.store.input_lines(run.batch["input_file_id"])
        for index, line in enumerate(lines):
            if index not in done:
                await self._error(batch_id, index, orjson.loads(line)["custom_id"], new_request_id(), expired)

    async def _finalize(self, batch_id: str, run: _Run) -> None:
        """Register the output/error files, then move to the final status; safe to repeat after a crash."""
        if run.stop_reason == "cancelling":
            final, source = "cancelled", ("cancelling",)
        elif run.stop_reason == "expired":
            final, source = "expired", ("in_progress",)
        else:
            if await self.store.transition(batch_id, "finalizing", "in_progress") is None:
                batch = await self.store.get_batch(batch_id)
                if batch is None or batch["status"] != "cancelling":
                    await self.store.deactivate(batch_id)
                    return
                final, source = "cancelled", ("cancelling",)
            else:
                final, source = "completed", ("finalizing",)
        fields: dict[str, Any] = {}
        hex_id = batch_id.removeprefix("batch_")
        ended = int(time.time())
        for which, field_name, purpose in (
            ("out", "output_file_id", "batch_output"),
            ("err", "error_file_id", "batch_output"),
        ):
            lines = await self.store.result_lines(batch_id, which)
            # Sealed counts: request_counts stay right after a result file (and its lines) is deleted.
            fields["final_completed" if which == "out" else "final_failed"] = len(lines)
            if not lines:
                continue
            file_id = f"file-{which}-{hex_id}"
            await self.store.add_result_file(
                {
                    "id": file_id,
                    "team": run.batch["team"],
                    "filename": f"{batch_id}_{'output' if which == 'out' else 'error'}.jsonl",
                    "purpose": purpose,
                    "bytes": sum(len(line.encode()) + 1 for line in lines),
                    "lines": len(lines),
                    "created_at": ended,
                    "expires_at": ended + self.store.retention_s,
                    "batch_id": batch_id,
                    "source": which,
                }
            )
            fields[field_name] = file_id
        await self.store.set_fields(batch_id, **fields)
        await self.store.transition(batch_id, final, *source)
        await self.store.expire_batch(batch_id, ended + self.store.retention_s)
        await self.store.deactivate(batch_id)
        log.info("batch %s %s", batch_id, final)
