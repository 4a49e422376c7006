"""The batch API's operations (upload, create, poll, cancel, list, content) in OpenAI's object shapes.
Every object belongs to the team of the key that created it; other teams get 404, as if it did not exist."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from redis.exceptions import RedisError

from llmops_common.errors import APIError
from services.gateway.batch.jsonl import ENDPOINTS, BodyCheck, FileLimits, parse_batch_file
from services.gateway.batch.store import BatchStore, new_id
from services.gateway.keys import KeyRecord

COMPLETION_WINDOWS = {"24h": 24 * 3600}
MAX_METADATA = 16
EXPIRES_AFTER_S = (3600, 30 * 24 * 3600)  # OpenAI's bounds for a file's `expires_after.seconds`


def _file_object(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "object": "file",
        "bytes": meta["bytes"],
        "created_at": meta["created_at"],
        "filename": meta["filename"],
        "purpose": meta["purpose"],
        "status": "processed",
        "status_details": None,
        "expires_at": meta.get("expires_at"),
    }


def batch_object(b: dict[str, Any]) -> dict[str, Any]:
    """A stored batch as OpenAI's Batch object."""
    input_tokens, output_tokens = int(b.get("input_tokens") or 0), int(b.get("output_tokens") or 0)
    return {
        "id": b["id"],
        "object": "batch",
        "endpoint": b["endpoint"],
        "model": b.get("model"),
        "errors": b.get("errors"),
        "input_file_id": b["input_file_id"],
        "completion_window": b["completion_window"],
        "status": b["status"],
        "output_file_id": b.get("output_file_id"),
        "error_file_id": b.get("error_file_id"),
        **{
            f"{name}_at": b.get(f"{name}_at")
            for name in ("created", "in_progress", "expires", "finalizing", "completed", "failed", "expired")
        },
        "cancelling_at": b.get("cancelling_at"),
        "cancelled_at": b.get("cancelled_at"),
        "request_counts": {"total": b["total"], "completed": b["completed"], "failed": b["failed"]},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": b.get("metadata"),
    }


def _expires_after_s(value: dict[str, Any]) -> int:
    """Seconds from OpenAI's `expires_after` object, checked against its bounds."""
    low, high = EXPIRES_AFTER_S
    seconds = value.get("seconds")
    if (
        value.get("anchor") != "created_at"
        or isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not low <= seconds <= high
    ):
        raise APIError(
            400,
            "invalid_expires_after",
            f"expires_after must be {{'anchor': 'created_at', 'seconds': N}} with {low} <= N <= {high}",
            param="expires_after",
        )
    return seconds


def _not_found(kind: str, ident: str) -> APIError:
    return APIError(404, f"{kind}_not_found", f"no {kind} with id '{ident}'", param=f"{kind}_id")


class BatchService:
    """Team-scoped operations over the BatchStore."""

    def __init__(self, store: BatchStore, limits: FileLimits, check: BodyCheck | None = None) -> None:
        self.store = store
        self.limits = limits
        self.check = check

    async def upload(
        self,
        record: KeyRecord,
        filename: str,
        purpose: str,
        raw: bytes,
        expires_after: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate a JSONL batch file whole, then store it in one transaction; it expires after the retention
        (GATEWAY_BATCH_FILE_TTL_S) unless OpenAI's `expires_after` ({"anchor": "created_at", "seconds": N}) says."""
        if purpose != "batch":
            raise APIError(
                400,
                "invalid_purpose",
                f"purpose must be 'batch' (this gateway stores batch inputs only), got {purpose!r}",
                param="purpose",
            )
        ttl_s = _expires_after_s(expires_after) if expires_after is not None else self.store.retention_s
        parsed = parse_batch_file(raw, self.limits, self.check)
        now = int(time.time())
        file_id = new_id("file-")
        await self._reserve_team_storage(record.team, file_id, len(raw), now + ttl_s)
        meta = {
            "id": file_id,
            "team": record.team,
            "filename": filename or "batch.jsonl",
            "purpose": "batch",
            "bytes": len(raw),
            "lines": len(parsed.lines),
            "urls": parsed.urls,
            "created_at": now,
            "expires_at": now + ttl_s,
        }
        try:
            await self.store.add_input_file(meta, parsed.lines)
        except BaseException:  # nothing was stored (one transaction): the bytes go back to the team
            with contextlib.suppress(RedisError):  # else they come back when the file would have expired
                await self.store.quota.release(record.team, file_id)
            raise
        return _file_object(meta)

    async def _reserve_team_storage(self, team: str, file_id: str, size: int, expires_at: int) -> None:
        """Redis holds every file for up to 30 days: a team's share of it is capped (GATEWAY_TEAM_FILE_BYTES_MAX).
        The bytes are reserved before the write in one atomic check-and-count, so racing uploads cannot pass the
        cap together (issue 12, row 10); the reservation ends with the file (delete, expiry) or a failed write."""
        cap = self.limits.team_max_bytes
        reserved, used = await self.store.quota.reserve(team, file_id, size, expires_at, cap)
        if not reserved:
            raise APIError(
                413,
                "team_storage_full",
                f"the team's batch files already hold {used} bytes; this file ({size} bytes) would pass the team's "
                f"cap of {cap} bytes; delete files (DELETE /v1/files/{{id}}) or wait until they expire",
            )

    async def delete_file(self, record: KeyRecord, file_id: str) -> dict[str, Any]:
        """Delete a file of the caller's team and its contents; 409 while an unfinished batch needs it."""
        meta = await self._file(record, file_id)
        outcome = await self.store.delete_file(meta)
        if outcome is False:  # deleted or expired since it was read above
            raise _not_found("file", file_id)
        if isinstance(outcome, tuple):
            batch_id, status = outcome
            raise APIError(
                409,
                "file_in_use",
                f"file '{file_id}' is in use by batch '{batch_id}', which is {status}; cancel the batch or wait "
                "until it ends, then delete the file",
                param="file_id",
            )
        return {"id": file_id, "object": "file", "deleted": True}

    async def _file(self, record: KeyRecord, file_id: str) -> dict[str, Any]:
        meta = await self.store.get_file(file_id)
        if meta is None or meta["team"] != record.team:
            raise _not_found("file", file_id)
        return meta

    async def get_file(self, record: KeyRecord, file_id: str) -> dict[str, Any]:
        """A file object of the caller's team."""
        return _file_object(await self._file(record, file_id))

    async def list_files(self, record: KeyRecord, limit: int) -> dict[str, Any]:
        """The team's files, newest first."""
        files = await self.store.list_files(record.team, limit)
        return {"object": "list", "data": [_file_object(f) for f in files], "has_more": False}

    async def file_content(self, record: KeyRecord, file_id: str) -> bytes:
        """The JSONL text of an input, output or error file."""
        meta = await self._file(record, file_id)
        if meta.get("batch_id"):
            lines = await self.store.result_lines(meta["batch_id"], meta["source"])
        else:
            lines = await self.store.input_lines(file_id)
        return "".join(line + "\n" for line in lines).encode()

    async def create(self, record: KeyRecord, body: dict[str, Any]) -> dict[str, Any]:
        """Check the request against the file, then queue the batch for a worker."""
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise APIError(400, "invalid_endpoint", f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint")
        window = body.get("completion_window")
        if window not in COMPLETION_WINDOWS:
            raise APIError(
                400, "invalid_completion_window", "completion_window must be '24h'", param="completion_window"
            )
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and len(metadata) <= MAX_METADATA
            and all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                for k, v in metadata.items()
            )
        ):
            raise APIError(
                400,
                "invalid_metadata",
                "metadata: at most 16 string pairs (keys <= 64, values <= 512 chars)",
                param="metadata",
            )
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise APIError(400, "invalid_request", "input_file_id is required", param="input_file_id")
        meta = await self._file(record, file_id)
        if meta.get("batch_id") or meta["purpose"] != "batch":
            raise APIError(
                400, "invalid_input_file", f"file '{file_id}' is not a batch input file", param="input_file_id"
            )
        if meta["urls"] != [endpoint]:
            raise APIError(
                400,
                "endpoint_mismatch",
                f"every line's url must equal the batch endpoint {endpoint}; the file uses {', '.join(meta['urls'])}",
                param="endpoint",
            )
        now = int(time.time())
        batch = {
            "id": new_id("batch_"),
            "team": record.team,
            "key_id": record.key_id,
            "endpoint": endpoint,
            "input_file_id": file_id,
            "completion_window": window,
            "status": "validating",
            "created_at": now,
            "expires_at": now + COMPLETION_WINDOWS[window],
            "total": meta["lines"],
            "metadata": metadata,
        }
        if not await self.store.add_batch(batch):  # deleted (or expired) since it was read above
            raise _not_found("file", file_id)
        return batch_object(batch | {"completed": 0, "failed": 0})

    async def _batch(self, record: KeyRecord, batch_id: str) -> dict[str, Any]:
        batch = await self.store.get_batch(batch_id)
        if batch is None or batch["team"] != record.team:
            raise _not_found("batch", batch_id)
        return batch

    async def get(self, record: KeyRecord, batch_id: str) -> dict[str, Any]:
        """A batch of the caller's team, with live counts."""
        return batch_object(await self._batch(record, batch_id))

    async def cancel(self, record: KeyRecord, batch_id: str) -> dict[str, Any]:
        """Ask the worker to stop: lines in flight finish, the rest are not run; finished lines stay downloadable."""
        await self._batch(record, batch_id)  # 404 for other teams before anything changes
        moved = await self.store.transition(batch_id, "cancelling", "validating", "in_progress")
        batch = await self._batch(record, batch_id)
        if moved is None and batch["status"] not in ("cancelling", "cancelled"):
            raise APIError(
                409, "batch_not_cancellable", f"batch '{batch_id}' is {batch['status']} and cannot be cancelled"
            )
        return batch_object(batch)

    async def list(self, record: KeyRecord, after: str | None, limit: int) -> dict[str, Any]:
        """The team's batches, newest first, paginated with `after`."""
        batches, more = await self.store.list_batches(record.team, after, limit)
        data = [batch_object(b) for b in batches]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }
