"""RPM/TPM limits and budgets, enforced atomically in Redis by server-side scripts.

Windows are fixed, aligned minutes: simple to reason about and exact at the boundary
("used + request <= limit" is admitted, one more is refused), and shared by every gateway replica.
Tokens and cost are reserved up front from an upper estimate and settled to the real usage afterwards.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from services.gateway.keys import KeyRecord

_LUA = Path(__file__).parent / "lua"
WINDOW_S = 60
WINDOW_TTL_S = 2 * WINDOW_S  # a window outlives its minute so late settlements still land

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


class Limiter:
    """Admission (check + reserve) and settlement (true-up) of one request."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.p = prefix
        self._admit = redis.register_script((_LUA / "admit.lua").read_text())
        self._settle = redis.register_script((_LUA / "settle.lua").read_text())

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
        ]

    async def admit(
        self, record: KeyRecord, tokens: int, cost_nusd: int, now: float | None = None, requests: int = 1
    ) -> Reservation:
        """Check every limit and reserve; raises LimitExceeded naming the first limit hit. `requests` is what counts
        against the rpm limits (0 for work that belongs to a request already counted)."""
        now = time.time() if now is None else now
        minute = int(now // WINDOW_S)
        keys = self._keys(record, minute)
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
            ],
        )
        if int(result[0]) != 1:
            limit = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
            retry = 0 if LIMIT_LABELS[limit][1] else max(1, math.ceil((minute + 1) * WINDOW_S - now))
            raise LimitExceeded(limit, int(result[2]), int(result[3]), int(result[4]), retry)
        return Reservation(keys[1], keys[3], keys[4], keys[5], tokens, cost_nusd)

    async def settle(self, reservation: Reservation, tokens: int, cost_nusd: int) -> None:
        """Replace the reservation by the real usage (or refund it when nothing was used)."""
        await self._settle(
            keys=[reservation.tpm_key, reservation.tpm_team, reservation.spend_key, reservation.spend_team],
            args=[tokens - reservation.tokens, cost_nusd - reservation.cost_nusd],
        )

    async def spend_nusd(self, team: str, key_id: str | None = None) -> int:
        """Accumulated spend (reservations in flight included) of a key, or of the team."""
        suffix = f"spend:k:{key_id}" if key_id else "spend:team"
        value = await self.redis.get(f"{self.p}:{{t:{team}}}:{suffix}")
        return int(value or 0)
