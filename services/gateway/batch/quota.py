"""A team's share of the batch files kept in Redis, reserved atomically (GATEWAY_TEAM_FILE_BYTES_MAX).

Checking the team's stored bytes and then writing the file let concurrent uploads each pass the check and
together exceed the cap (issue 12, row 10). Instead every file reserves its bytes first, in one server-side
script that checks and counts at once, so of N racing uploads exactly those that fit are admitted.

Layout (prefix `P` = `<redis_prefix>:batch:team:<team>:usage`):
  P          hash: file id -> bytes reserved (one entry per stored file; a retried reservation is a no-op)
  P:exp      sorted set: file id -> the file's expiry (unix seconds)
  P:bytes    the counter: the sum of the hash. Its presence says the team's usage was initialised.

A reservation is released when the write fails, when the file is deleted (in the delete's own script) and when
the file expires: entries whose expiry passed are dropped by the next reservation or read, so a gateway that died
between reserving and writing leaks the bytes only until the file would have expired.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

# Drop entries whose expiry has passed (KEYS: hash, expiry zset, counter; `now` in unix seconds).
PURGE = """
local function purge(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
    local size = redis.call('HGET', KEYS[1], id)
    if size then
      redis.call('DECRBY', KEYS[3], size)
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('ZREM', KEYS[2], id)
  end
end
"""
# ARGV: file id, bytes, expires_at, now, cap (-1: count without a cap, for result files the worker must keep).
# Returns {1, used after} when reserved (or already reserved), {0, used} when it does not fit, {-1, 0} when the
# team's usage was never initialised (the caller adopts the files stored before this counter existed, retries).
_RESERVE = (
    PURGE
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, 0} end
purge(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[3]))
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1, used} end
local size, cap = tonumber(ARGV[2]), tonumber(ARGV[5])
if cap >= 0 and used + size > cap then return {0, used} end
redis.call('HSET', KEYS[1], ARGV[1], size)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('INCRBY', KEYS[3], size)
return {1, used + size}
"""
)


# Give a file's bytes back (idempotent). KEYS from `first` on: hash, expiry set, counter; ARGV[n]: the file id.
def release_lua(first: int, arg: int) -> str:
    """The release as Lua over KEYS[first..first+2] and ARGV[arg] (the delete script embeds it)."""
    h, z, c = (f"KEYS[{first + i}]" for i in range(3))
    return (
        f"local size = redis.call('HGET', {h}, ARGV[{arg}])\n"
        f"if size then redis.call('DECRBY', {c}, size); redis.call('HDEL', {h}, ARGV[{arg}]) end\n"
        f"redis.call('ZREM', {z}, ARGV[{arg}])\n"
    )


_RELEASE = release_lua(1, 1) + "return 1\n"
_USED = PURGE + "purge(ARGV[1])\nreturn tonumber(redis.call('GET', KEYS[3]) or '0')\n"
# Initialise once from the files already stored. ARGV: now, then (id, bytes, expires_at) triples. A no-op when the
# counter exists, so concurrent first uploads adopt once; files written later reserve for themselves.
_ADOPT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[3], 0)
for i = 2, #ARGV, 3 do
  if tonumber(ARGV[i + 2]) > tonumber(ARGV[1]) and redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i])
    redis.call('INCRBY', KEYS[3], ARGV[i + 1])
  end
end
return 1
"""

# (team) -> [(file id, bytes, expires_at)] of the team's stored files, for the one-time adoption.
Lister = Callable[[str], Awaitable[list[tuple[str, int, int]]]]


class TeamQuota:
    """Atomic per-team reservations of stored bytes."""

    def __init__(self, redis: Redis, prefix: str, lister: Lister) -> None:
        self.redis = redis
        self.p = prefix  # `<redis_prefix>:batch`
        self._lister = lister
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._used = redis.register_script(_USED)
        self._adopt = redis.register_script(_ADOPT)

    def keys(self, team: str) -> list[str]:
        """The hash, expiry set and counter of a team (in the order the scripts take them)."""
        base = f"{self.p}:team:{team}:usage"
        return [base, f"{base}:exp", f"{base}:bytes"]

    async def reserve(self, team: str, file_id: str, size: int, expires_at: int, cap: int | None) -> tuple[bool, int]:
        """Count `size` bytes for the file if the team stays within `cap` (None: always); (reserved, bytes used)."""
        args = [file_id, size, expires_at, int(time.time()), -1 if cap is None else cap]
        for _ in range(2):
            ok, used = (int(v) for v in await self._reserve(keys=self.keys(team), args=args))
            if ok >= 0:
                return ok == 1, used
            await self._adopt_existing(team)
        raise RuntimeError(f"could not initialise the storage counter of team {team!r}")

    async def release(self, team: str, file_id: str) -> None:
        """Give a file's reservation back (its write failed, or it was deleted)."""
        await self._release(keys=self.keys(team), args=[file_id])

    async def used(self, team: str) -> int:
        """Bytes the team's live files hold."""
        return int(await self._used(keys=self.keys(team), args=[int(time.time())]))

    async def _adopt_existing(self, team: str) -> None:
        files = await self._lister(team)
        await self._adopt(keys=self.keys(team), args=[int(time.time()), *(v for f in files for v in f)])
