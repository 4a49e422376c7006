"""Batch and file state in Redis, so any replica can answer a poll and a restarted gateway resumes.

Layout (prefix `P` = `<redis_prefix>:batch`):
  P:file:<id>            hash: file metadata (team, filename, purpose, bytes, lines, urls, batch_id for outputs)
  P:file:<id>:lines      list: the validated request lines of an input file (contents live in Redis, bounded
                         by the upload limit, so every replica can read them; no shared disk needed)
  P:b:<id>               hash: batch fields (status, timestamps, team, key id, usage counters)
  P:b:<id>:out|err       hash: line index -> output / error line. A field's presence is the line's completion
                         marker: written once (HSETNX), never redone, and the output files are read from here.
  P:b:<id>:lease         string: the replica processing the batch (expires unless renewed)
  P:team:<team>:files|batches   sorted sets by creation time (listing)
  P:active               set: batches a worker still has to process (validating, in_progress, cancelling)
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis

# Compare-and-set on the status: a transition only happens from the states listed (cancel vs. finish races).
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return nil end
for i = 3, #ARGV do if ARGV[i] == current then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', ARGV[2])
  return current
end end
return false
"""
# Renew (or release, when ARGV[2] is 0) a lease only if this replica still holds it.
_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""
ACTIVE_STATES = ("validating", "in_progress", "cancelling")
TERMINAL_STATES = ("completed", "failed", "expired", "cancelled")


def new_id(prefix: str) -> str:
    """An opaque id in OpenAI's style (`file-...`, `batch_...`)."""
    return prefix + secrets.token_hex(12)


class BatchStore:
    """Every Redis read and write of the batch API; each method is one round trip or one transaction."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.p = f"{prefix}:batch"
        self._transition = redis.register_script(_TRANSITION)
        self._lease = redis.register_script(_LEASE)

    # ---- files -------------------------------------------------------------------------------------------
    async def add_input_file(self, meta: dict[str, Any], lines: list[str]) -> None:
        """Store a validated file in one transaction: all of it or nothing."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.p}:file:{meta['id']}", mapping=_flat(meta))
            pipe.rpush(f"{self.p}:file:{meta['id']}:lines", *lines)
            pipe.zadd(f"{self.p}:team:{meta['team']}:files", {meta["id"]: meta["created_at"]})
            await pipe.execute()

    async def add_result_file(self, meta: dict[str, Any]) -> None:
        """Register an output or error file (its lines stay in the batch's out/err hash); idempotent."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.p}:file:{meta['id']}", mapping=_flat(meta))
            pipe.zadd(f"{self.p}:team:{meta['team']}:files", {meta["id"]: meta["created_at"]})
            await pipe.execute()

    async def get_file(self, file_id: str) -> dict[str, Any] | None:
        """A file's metadata, or None."""
        data = await self.redis.hgetall(f"{self.p}:file:{file_id}")
        return _typed(data) if data else None

    async def list_files(self, team: str, limit: int) -> list[dict[str, Any]]:
        """A team's files, newest first."""
        ids = await self.redis.zrevrange(f"{self.p}:team:{team}:files", 0, limit - 1)
        return [f for f in [await self.get_file(i) for i in ids] if f is not None]

    async def input_lines(self, file_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """Lines `start..stop` (inclusive) of an input file."""
        return list(await self.redis.lrange(f"{self.p}:file:{file_id}:lines", start, stop))

    # ---- batches -----------------------------------------------------------------------------------------
    async def add_batch(self, batch: dict[str, Any]) -> None:
        """Store a new batch and queue it for a worker."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.p}:b:{batch['id']}", mapping=_flat(batch))
            pipe.zadd(f"{self.p}:team:{batch['team']}:batches", {batch["id"]: batch["created_at"]})
            pipe.sadd(f"{self.p}:active", batch["id"])
            await pipe.execute()

    async def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """A batch's fields with live counts, or None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self.p}:b:{batch_id}")
            pipe.hlen(f"{self.p}:b:{batch_id}:out")
            pipe.hlen(f"{self.p}:b:{batch_id}:err")
            data, done, failed = await pipe.execute()
        if not data:
            return None
        batch = _typed(data)
        batch["completed"], batch["failed"] = int(done), int(failed)
        return batch

    async def list_batches(self, team: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """A team's batches, newest first, starting after the batch `after`; and whether more exist."""
        key = f"{self.p}:team:{team}:batches"
        start = 0
        if after:
            rank = await self.redis.zrevrank(key, after)
            start = 0 if rank is None else int(rank) + 1
        ids = await self.redis.zrevrange(key, start, start + limit)
        batches = [b for b in [await self.get_batch(i) for i in ids[:limit]] if b is not None]
        return batches, len(ids) > limit

    async def set_fields(self, batch_id: str, **fields: Any) -> None:
        """Write plain fields of a batch."""
        await self.redis.hset(f"{self.p}:b:{batch_id}", mapping=_flat(fields))

    async def transition(self, batch_id: str, to: str, *from_states: str) -> str | None:
        """Move to `to` (stamping `<to>_at`) if the status is one of `from_states`; returns the old status."""
        old = await self._transition(keys=[f"{self.p}:b:{batch_id}"], args=[to, int(time.time()), *from_states])
        return str(old) if old else None

    async def deactivate(self, batch_id: str) -> None:
        """Take a finished batch off the worker queue."""
        await self.redis.srem(f"{self.p}:active", batch_id)

    async def active(self) -> list[str]:
        """Batches waiting for (or being processed by) a worker."""
        return sorted(await self.redis.smembers(f"{self.p}:active"))

    # ---- lines -------------------------------------------------------------------------------------------
    async def done_lines(self, batch_id: str) -> set[int]:
        """Indexes of lines that already have an output or an error."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hkeys(f"{self.p}:b:{batch_id}:out")
            pipe.hkeys(f"{self.p}:b:{batch_id}:err")
            out, err = await pipe.execute()
        return {int(i) for i in (*out, *err)}

    async def record_line(
        self, batch_id: str, index: int, line: dict[str, Any], ok: bool, tokens: tuple[int, int] = (0, 0)
    ) -> bool:
        """Write a line's result once; False when it was already there (another replica, or a replay)."""
        key = f"{self.p}:b:{batch_id}"
        written = await self.redis.hsetnx(f"{key}:{'out' if ok else 'err'}", str(index), orjson.dumps(line).decode())
        if written and any(tokens):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "input_tokens", tokens[0])
                pipe.hincrby(key, "output_tokens", tokens[1])
                await pipe.execute()
        return bool(written)

    async def result_lines(self, batch_id: str, which: str) -> list[str]:
        """The output (`out`) or error (`err`) lines of a batch, in input order."""
        data = await self.redis.hgetall(f"{self.p}:b:{batch_id}:{which}")
        return [data[k] for k in sorted(data, key=int)]

    # ---- leases ------------------------------------------------------------------------------------------
    async def claim(self, batch_id: str, owner: str, lease_s: float) -> bool:
        """Take the batch for this replica unless another one holds it."""
        return bool(await self.redis.set(f"{self.p}:b:{batch_id}:lease", owner, nx=True, px=int(lease_s * 1000)))

    async def renew(self, batch_id: str, owner: str, lease_s: float) -> bool:
        """Extend this replica's lease; False when it was lost."""
        return bool(await self._lease(keys=[f"{self.p}:b:{batch_id}:lease"], args=[owner, int(lease_s * 1000)]))

    async def release(self, batch_id: str, owner: str) -> None:
        """Give the batch back at once (clean shutdown), so another replica need not wait for the lease."""
        await self._lease(keys=[f"{self.p}:b:{batch_id}:lease"], args=[owner, 0])


# Fields holding JSON (numbers, lists, objects); every other field is a plain string, stored as-is.
_JSON_FIELDS = {"bytes", "lines", "urls", "total", "metadata", "errors", "input_tokens", "output_tokens"}


def _flat(fields: dict[str, Any]) -> dict[str, str]:
    return {
        k: orjson.dumps(v).decode() if (k in _JSON_FIELDS or k.endswith("_at")) else str(v)
        for k, v in fields.items()
        if v is not None
    }


def _typed(data: dict[str, str]) -> dict[str, Any]:
    return {k: orjson.loads(v) if (k in _JSON_FIELDS or k.endswith("_at")) else v for k, v in data.items()}
