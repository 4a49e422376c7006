"""Batch and file state in Redis, so any replica can answer a poll and a restarted gateway resumes.

Layout (prefix `P` = `<redis_prefix>:batch`):
  P:file:<id>            hash: file metadata (team, filename, purpose, bytes, lines, urls, batch_id for outputs)
  P:file:<id>:lines      list: the validated request lines of an input file (contents live in Redis, bounded
                         by the upload limit, so every replica can read them; no shared disk needed)
  P:file:<id>:batches    set: batches created over an input file (a file in use by a running batch is not deleted)
  P:b:<id>               hash: batch fields (status, timestamps, team, key id, usage counters)
  P:b:<id>:out|err       hash: line index -> output / error line. A field's presence is the line's completion
                         marker: written once (HSETNX), never redone, and the output files are read from here.
  P:b:<id>:lease         string: the replica processing the batch (expires unless renewed)
  P:team:<team>:files|batches   sorted sets by creation time (listing)
  P:active               set: batches a worker still has to process (validating, in_progress, cancelling)
  P:team:<team>:usage    hash, with :exp and :bytes: the bytes each of the team's files reserved against
                         GATEWAY_TEAM_FILE_BYTES_MAX (batch/quota.py), released on delete and expiry

Nothing lives forever (`retention_s`, GATEWAY_BATCH_FILE_TTL_S): an input file expires `retention_s` after its
upload (or its own `expires_after`), pushed back while a batch over it may still run; a finished batch, its
result lines and its output/error files expire `retention_s` after it ends. Team listings drop ids whose keys
have expired as they are read.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from services.gateway.batch.quota import TeamQuota, release_lua

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
# Delete a file unless a batch that has not ended needs it (its input, or the batch a result file belongs to), and
# give its bytes back to the team's storage quota in the same step.
# KEYS: file hash, team files zset, the file's batches set, the key holding its lines, then the quota's three keys.
# ARGV: batch hash prefix, file id, the owning batch id ('' for input files), then the terminal states.
# Batch hash names are built here from the set's members: fine on one Redis (this store is not cluster-aware).
_DELETE_FILE = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local terminal = {}
for i = 4, #ARGV do terminal[ARGV[i]] = true end
local users = redis.call('SMEMBERS', KEYS[3])
if ARGV[3] ~= '' then table.insert(users, ARGV[3]) end
for _, id in ipairs(users) do
  local status = redis.call('HGET', ARGV[1] .. id, 'status')
  if status and not terminal[status] then return {id, status} end
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
"""
    + release_lua(5, 2)
    + """
return {}
"""
)
TERMINAL_STATES = ("completed", "failed", "expired", "cancelled")


def new_id(prefix: str) -> str:
    """An opaque id in OpenAI's style (`file-...`, `batch_...`)."""
    return prefix + secrets.token_hex(12)


class BatchStore:
    """Every Redis read and write of the batch API; each method is one round trip or one transaction."""

    def __init__(self, redis: Redis, prefix: str, retention_s: int = 30 * 24 * 3600) -> None:
        self.redis = redis
        self.p = f"{prefix}:batch"
        self.retention_s = retention_s
        self._transition = redis.register_script(_TRANSITION)
        self._lease = redis.register_script(_LEASE)
        self._delete_file = redis.register_script(_DELETE_FILE)
        self.quota = TeamQuota(redis, self.p, self._live_files)

    # ---- files -------------------------------------------------------------------------------------------
    async def add_input_file(self, meta: dict[str, Any], lines: list[str]) -> None:
        """Store a validated file in one transaction: all of it or nothing; it expires at `meta['expires_at']`."""
        key = f"{self.p}:file:{meta['id']}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_flat(meta))
            pipe.rpush(f"{key}:lines", *lines)
            pipe.zadd(f"{self.p}:team:{meta['team']}:files", {meta["id"]: meta["created_at"]})
            pipe.expireat(key, meta["expires_at"])
            pipe.expireat(f"{key}:lines", meta["expires_at"])
            await pipe.execute()

    async def add_result_file(self, meta: dict[str, Any]) -> None:
        """Register an output or error file (its lines stay in the batch's out/err hash); idempotent. Its bytes
        count in the team's storage without a cap check: the work was admitted, its results are kept."""
        key = f"{self.p}:file:{meta['id']}"
        await self.quota.reserve(meta["team"], meta["id"], int(meta["bytes"]), int(meta["expires_at"]), None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_flat(meta))
            pipe.zadd(f"{self.p}:team:{meta['team']}:files", {meta["id"]: meta["created_at"]})
            pipe.expireat(key, meta["expires_at"])
            await pipe.execute()

    async def delete_file(self, meta: dict[str, Any]) -> bool | tuple[str, str]:
        """Delete a file and its lines: True; False when it was gone already; (batch id, status) of a batch that
        has not ended and needs the file, when nothing was deleted."""
        key = f"{self.p}:file:{meta['id']}"
        owner = str(meta.get("batch_id") or "")
        lines = f"{self.p}:b:{owner}:{meta['source']}" if owner else f"{key}:lines"
        keys = [key, f"{self.p}:team:{meta['team']}:files", f"{key}:batches", lines, *self.quota.keys(meta["team"])]
        blocked = await self._delete_file(keys=keys, args=[f"{self.p}:b:", meta["id"], owner, *TERMINAL_STATES])
        if blocked is None:
            return False
        return (str(blocked[0]), str(blocked[1])) if blocked else True

    async def get_file(self, file_id: str) -> dict[str, Any] | None:
        """A file's metadata, or None."""
        data = await self.redis.hgetall(f"{self.p}:file:{file_id}")
        return _typed(data) if data else None

    async def list_files(self, team: str, limit: int) -> list[dict[str, Any]]:
        """A team's files, newest first (ids of expired files are dropped from the listing on the way)."""
        key = f"{self.p}:team:{team}:files"
        ids = await self.redis.zrevrange(key, 0, limit - 1)
        found = {i: await self.get_file(i) for i in ids}
        await self._forget(key, [i for i, f in found.items() if f is None])
        return [f for f in found.values() if f is not None]

    async def _live_files(self, team: str) -> list[tuple[str, int, int]]:
        """(id, bytes, expires_at) of the team's stored files: what the storage quota adopts when it starts."""
        ids = await self.redis.zrange(f"{self.p}:team:{team}:files", 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(f"{self.p}:file:{i}", "bytes", "expires_at")
            rows = await pipe.execute() if ids else []
        fallback = int(time.time()) + self.retention_s  # files stored before expiry was recorded
        return [(i, int(size), int(expires or fallback)) for i, (size, expires) in zip(ids, rows, strict=True) if size]

    async def _forget(self, listing: str, gone: list[str]) -> None:
        if gone:
            await self.redis.zrem(listing, *gone)

    async def input_lines(self, file_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """Lines `start..stop` (inclusive) of an input file."""
        return list(await self.redis.lrange(f"{self.p}:file:{file_id}:lines", start, stop))

    # ---- batches -----------------------------------------------------------------------------------------
    async def add_batch(self, batch: dict[str, Any]) -> bool:
        """Store a new batch and queue it for a worker; False (nothing written) when its input file is gone.

        The input file is watched, so a delete that wins the race makes this fail instead of leaving a batch
        without lines; its expiry moves past the batch's own completion window plus the retention."""
        file_key = f"{self.p}:file:{batch['input_file_id']}"
        keep_until = int(batch["expires_at"]) + self.retention_s
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(10):  # another batch over the same file may touch its expiry: retry on conflict
                try:
                    await pipe.watch(file_key)
                    if not await pipe.exists(file_key):
                        return False
                    raw = await pipe.hget(file_key, "expires_at")  # absent on files stored before expiry existed
                    expires_at = max(int(raw or 0), keep_until)
                    pipe.multi()
                    pipe.hset(f"{self.p}:b:{batch['id']}", mapping=_flat(batch))
                    pipe.zadd(f"{self.p}:team:{batch['team']}:batches", {batch["id"]: batch["created_at"]})
                    pipe.sadd(f"{self.p}:active", batch["id"])
                    pipe.sadd(f"{file_key}:batches", batch["id"])
                    pipe.hset(file_key, "expires_at", expires_at)
                    # the file's bytes stay counted in the team's storage for as long as it now lives
                    pipe.zadd(self.quota.keys(batch["team"])[1], {batch["input_file_id"]: expires_at}, xx=True, gt=True)
                    for key in (file_key, f"{file_key}:lines", f"{file_key}:batches"):
                        pipe.expireat(key, expires_at)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        raise RuntimeError(f"could not queue a batch over {batch['input_file_id']}: too many concurrent writers")

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
        # A finished batch keeps the counts it ended with, even after its output or error file is deleted.
        batch["completed"] = batch.pop("final_completed", int(done))
        batch["failed"] = batch.pop("final_failed", int(failed))
        return batch

    async def list_batches(self, team: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """A team's batches, newest first, starting after the batch `after`; and whether more exist."""
        key = f"{self.p}:team:{team}:batches"
        start = 0
        if after:
            rank = await self.redis.zrevrank(key, after)
            start = 0 if rank is None else int(rank) + 1
        ids = await self.redis.zrevrange(key, start, start + limit)
        found = {i: await self.get_batch(i) for i in ids[:limit]}
        await self._forget(key, [i for i, b in found.items() if b is None])
        return [b for b in found.values() if b is not None], len(ids) > limit

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

    async def expire_batch(self, batch_id: str, at: int) -> None:
        """A finished batch and its result lines disappear at `at` (their result files carry the same time)."""
        key = f"{self.p}:b:{batch_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in (key, f"{key}:out", f"{key}:err"):
                pipe.expireat(name, at)
            await pipe.execute()

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
_JSON_FIELDS = {
    "bytes",
    "lines",
    "urls",
    "total",
    "metadata",
    "errors",
    "input_tokens",
    "output_tokens",
    "final_completed",
    "final_failed",
}


def _flat(fields: dict[str, Any]) -> dict[str, str]:
    return {
        k: orjson.dumps(v).decode() if (k in _JSON_FIELDS or k.endswith("_at")) else str(v)
        for k, v in fields.items()
        if v is not None
    }


def _typed(data: dict[str, str]) -> dict[str, Any]:
    return {k: orjson.loads(v) if (k in _JSON_FIELDS or k.endswith("_at")) else v for k, v in data.items()}
