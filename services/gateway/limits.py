"""RPM/TPM limits and budgets, enforced atomically in Redis by server-side scripts.

Windows are fixed, aligned minutes: simple to reason about and exact at the boundary
("used + request <= limit" is admitted, one more is refused), and shared by every gateway replica.
Tokens and cost are reserved up front from an upper estimate and settled to the real usage afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.gateway.keys import KeyRecord

_LUA = Path(__file__).parent / "lua"
WINDOW_S = 60
WINDOW_TTL_S = 2 * WINDOW_S  # a window outlives its minute so late settlements still land
# Each admission leaves a marker until it is settled: it makes settlement idempotent (so a settlement whose reply
# was lost is sent again until Redis answers) and lets an admission whose reply never came be cancelled. A request
# in flight longer than RESERVED_TTL_S is settled no more (its reservation stays charged).
RESERVED_TTL_S = 24 * 3600
# A cancelled admission may still run when Redis wakes up (the script sits in its socket buffer): its tombstone
# lives this long, and the gateway keeps retrying a cancel or a settlement for as long.
CANCELLED_TTL_S = 600
RETRY_S = 0.5
log = logging.getLogger("gateway.limits")

# How each limit is named to the caller, and whether it is a budget (402) or a rate (429).
LIMIT_LABELS = {
    "key_rpm": ("requests per minute of this key", False),
    "team_rpm": ("requests per minute of this team", False),
    "key_tpm": ("tokens per minute of this key", False),
    "team_tpm": ("tokens per minute of this team", False),
    "key_budget": ("budget of this key", True),
    "team_budget": ("budget of this team", True),
}


class LimitExceeded(Exception):
    """A request would exceed `limit`; carries the numbers for a clear message."""

    def __init__(self, limit: str, used: int, maximum: int, requested: int, retry_after_s: int) -> None:
        super().__init__(limit)
        self.limit = limit
        self.used = used
        self.maximum = maximum
        self.requested = requested
        self.retry_after_s = retry_after_s

    @property
    def is_budget(self) -> bool:
        """Budgets are 402 (spend more money), rates 429 (wait)."""
        return LIMIT_LABELS[self.limit][1]


@dataclass(frozen=True)
class Reservation:
    """What admission reserved, and where, so settlement adjusts the same counters."""

    tpm_key: str
    tpm_team: str
    spend_key: str
    spend_team: str
    tokens: int
    cost_nusd: int
    marker: str = ""  # the admission's marker key, deleted on settlement


class Limiter:
    """Admission (check + reserve) and settlement (true-up) of one request."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.p = prefix
        self._admit = redis.register_script((_LUA / "admit.lua").read_text())
        self._settle = redis.register_script((_LUA / "settle.lua").read_text())
        self._cancel = redis.register_script((_LUA / "cancel.lua").read_text())
        self._pending: set[asyncio.Task[None]] = set()  # deferred cancellations and settlements

    def _keys(self, record: KeyRecord, minute: int) -> list[str]:
        base = f"{self.p}:{{t:{record.team}}}"
        return [
            f"{base}:rpm:k:{record.key_id}:{minute}",
            f"{base}:tpm:k:{record.key_id}:{minute}",
            f"{base}:rpm:team:{minute}",
            f"{base}:tpm:team:{minute}",
            f"{base}:spend:k:{record.key_id}",
            f"{base}:spend:team",
            f"{base}:limits",
            f"{base}:adm:{secrets.token_hex(8)}",  # this admission's marker (same hash slot as its counters)
        ]

    async def admit(
        self, record: KeyRecord, tokens: int, cost_nusd: int, now: float | None = None, requests: int = 1
    ) -> Reservation:
        """Check every limit and reserve; raises LimitExceeded naming the first limit hit. `requests` is what counts
        against the rpm limits (0 for work that belongs to a request already counted)."""
        now = time.time() if now is None else now
        minute = int(now // WINDOW_S)
        keys = self._keys(record, minute)
        reservation = Reservation(keys[1], keys[3], keys[4], keys[5], tokens, cost_nusd, keys[7])
        try:
            result = await self._admit(
                keys=keys,
                args=[
                    -1 if record.rpm_limit is None else record.rpm_limit,
                    -1 if record.tpm_limit is None else record.tpm_limit,
                    -1 if record.budget_nusd is None else record.budget_nusd,
                    tokens,
                    cost_nusd,
                    WINDOW_TTL_S,
                    requests,
                    RESERVED_TTL_S,
                ],
            )
        except (RedisTimeoutError, RedisConnectionError):
            # The script may have been sent and may still run (a hung Redis executes its buffered input when it
            # wakes): the caller is told "unavailable", so make sure this reservation is never left charged.
            self._cancel_later(reservation)
            raise
        if int(result[0]) != 1:
            limit = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
            if limit == "cancelled":  # only a resend that arrives after its own cancel: the caller gave up already
                raise RedisConnectionError("admission cancelled after a lost reply")
            retry = 0 if LIMIT_LABELS[limit][1] else max(1, math.ceil((minute + 1) * WINDOW_S - now))
            raise LimitExceeded(limit, int(result[2]), int(result[3]), int(result[4]), retry)
        return reservation

    async def settle(
        self, reservation: Reservation, tokens: int, cost_nusd: int, extra: Callable[[Any], None] | None = None
    ) -> bool:
        """Replace the reservation by the real usage (or refund it when nothing was used). When Redis cannot be
        reached, the settlement is retried in the background until it answers (idempotent: the marker).

        `extra(pipe)` adds other writes of the same request to the settlement's round trip (the trace event's
        XADD: one round trip per finished request instead of two). Returns whether they were applied; when not,
        retrying them is the caller's (only the settlement is retried here)."""
        keys = [reservation.tpm_key, reservation.tpm_team, reservation.spend_key, reservation.spend_team]
        args = [tokens - reservation.tokens, cost_nusd - reservation.cost_nusd]
        if not reservation.marker:
            await self._settle(keys=keys, args=args)
            return False
        keys.append(reservation.marker)
        if extra is not None:
            return await self._settle_with(keys, args, extra)
        await self._settle_alone(keys, args)
        return False

    async def _settle_alone(self, keys: list[str], args: list[int]) -> None:
        try:
            await self._settle(keys=keys, args=args)
        except (RedisTimeoutError, RedisConnectionError):
            # The answer was served: charge what it used once Redis is back, never leave the reservation charged.
            self._until_done(lambda: self._settle(keys=keys, args=args), "settlement")

    async def _settle_with(self, keys: list[str], args: list[int], extra: Callable[[Any], None]) -> bool:
        """The settlement and `extra` in one pipeline; whether `extra`'s writes were applied."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                # EVALSHA by hand: a pipeline given the script object would check SCRIPT EXISTS first, a round
                # trip more on every call (the one this saves).
                pipe.evalsha(self._settle.sha, len(keys), *keys, *args)
                extra(pipe)
                results = await pipe.execute(raise_on_error=False)
        except (RedisTimeoutError, RedisConnectionError):
            self._until_done(lambda: self._settle(keys=keys, args=args), "settlement")
            return False
        applied = not any(isinstance(r, Exception) for r in results[1:])
        if isinstance(results[0], NoScriptError):  # Redis restarted or flushed its scripts: this call loads it
            await self._settle_alone(keys, args)
        elif isinstance(results[0], Exception):
            raise results[0]
        return applied

    def _cancel_later(self, reservation: Reservation) -> None:
        keys = [reservation.tpm_key, reservation.tpm_team, reservation.spend_key, reservation.spend_team]
        args = [reservation.tokens, reservation.cost_nusd, CANCELLED_TTL_S]
        self._until_done(lambda: self._cancel(keys=[*keys, reservation.marker], args=args), "cancellation")

    def _until_done(self, call: Callable[[], Awaitable[Any]], what: str) -> None:
        task = asyncio.create_task(self._retry(call, what), name=f"redis-{what}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _retry(self, call: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run an idempotent script until Redis answers, for at most CANCELLED_TTL_S."""
        deadline = time.monotonic() + CANCELLED_TTL_S
        while time.monotonic() < deadline:
            try:
                await call()
                log.info("deferred %s applied after a Redis failure", what)
                return
            except RedisError:
                await asyncio.sleep(RETRY_S)
        log.warning("deferred %s given up: Redis unreachable for %ss", what, CANCELLED_TTL_S)

    async def close(self) -> None:
        """Stop deferred cancellations and settlements (shutdown), after a short grace for Redis to answer."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5.0)
        for task in list(self._pending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def spend_nusd(self, team: str, key_id: str | None = None) -> int:
        """Accumulated spend (reservations in flight included) of a key, or of the team."""
        suffix = f"spend:k:{key_id}" if key_id else "spend:team"
        value = await self.redis.get(f"{self.p}:{{t:{team}}}:{suffix}")
        return int(value or 0)
