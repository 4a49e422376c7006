"""Virtual keys and teams, stored in Redis. Keys are stored hashed; the plaintext is shown once.

Layout (prefix `P`):
  P:keyrec:<sha256>  hash: the key record, found by hashing the presented bearer token
  P:keyid:<key_id>   string: sha256 of that key (admin operations address keys by id)
  P:keys             set of key ids;  P:teams set of team names
  P:{t:<team>}:limits hash: team RPM/TPM/budget (the {t:..} hash tag keeps a team's keys in one cluster slot)
  P:keys:changed     pub/sub channel: the digest of a key record that changed (replicas drop their cached copy)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from services.gateway.keycache import KeyCache

KEY_PREFIX = "sk-llmops-"


def hash_key(plaintext: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is the right tool (no salt/KDF needed)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _opt_int(value: str | None) -> int | None:
    return None if value in (None, "", "-1") else int(value)


@dataclass
class KeyRecord:
    """A virtual key as the gateway enforces it."""

    key_id: str
    team: str
    project: str
    name: str
    key_hint: str
    allowed_models: list[str] = field(default_factory=list)  # empty: every model
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    budget_nusd: int | None = None
    status: str = "active"
    created_at: float = 0.0
    cache: bool | None = None  # the response cache: True on, False never, None as the model's route says

    def to_redis(self) -> dict[str, str]:
        """Flatten for HSET (None becomes -1, meaning no limit)."""
        return {
            "key_id": self.key_id,
            "team": self.team,
            "project": self.project,
            "name": self.name,
            "key_hint": self.key_hint,
            "allowed_models": orjson.dumps(self.allowed_models).decode(),
            "rpm_limit": str(-1 if self.rpm_limit is None else self.rpm_limit),
            "tpm_limit": str(-1 if self.tpm_limit is None else self.tpm_limit),
            "budget_nusd": str(-1 if self.budget_nusd is None else self.budget_nusd),
            "status": self.status,
            "created_at": repr(self.created_at),
            "cache": "" if self.cache is None else ("1" if self.cache else "0"),
        }

    @classmethod
    def from_redis(cls, data: dict[str, str]) -> KeyRecord:
        """Inverse of to_redis."""
        return cls(
            key_id=data["key_id"],
            team=data["team"],
            project=data["project"],
            name=data.get("name", ""),
            key_hint=data.get("key_hint", ""),
            allowed_models=orjson.loads(data.get("allowed_models", "[]")) or [],  # a stored null: every model
            rpm_limit=_opt_int(data.get("rpm_limit")),
            tpm_limit=_opt_int(data.get("tpm_limit")),
            budget_nusd=_opt_int(data.get("budget_nusd")),
            status=data.get("status", "active"),
            created_at=float(data.get("created_at", 0)),
            cache={"1": True, "0": False}.get(data.get("cache", "")),
        )

    def allows(self, model: str) -> bool:
        """Whether this key may call `model`."""
        return not self.allowed_models or model in self.allowed_models


@dataclass
class TeamRecord:
    """Limits shared by every key of a team."""

    team: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    budget_nusd: int | None = None


class KeyNotFound(Exception):
    """No key with that id."""


class TeamNotFound(Exception):
    """No team with that name."""


class KeyStore:
    """CRUD over keys and teams; every method is one or two Redis round trips.

    `lookup` (the hot path) may be served from `cache`, which every replica keeps coherent by listening on
    `changes_channel`: each write below publishes the digest it changed.
    """

    def __init__(self, redis: Redis, prefix: str, cache: KeyCache | None = None) -> None:
        self.redis = redis
        self.p = prefix
        self.cache = cache if cache is not None else KeyCache(ttl_s=0)  # ttl 0: no caching (unit tests, tools)

    @property
    def changes_channel(self) -> str:
        """Pub/sub channel announcing changed key records."""
        return f"{self.p}:keys:changed"

    async def _announce(self, digest: str) -> None:
        # Drop our own copy first, so this replica never serves the old record after the write returns.
        self.cache.forget(digest)
        await self.redis.publish(self.changes_channel, digest)

    def team_limits_key(self, team: str) -> str:
        """Redis key of a team's limits hash (also read by the admission script)."""
        return f"{self.p}:{{t:{team}}}:limits"

    async def lookup(self, plaintext: str) -> KeyRecord | None:
        """The hot path: find the record of a presented bearer token (unknown tokens are never cached)."""
        digest = hash_key(plaintext)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        generation = self.cache.generation
        data = await self.redis.hgetall(f"{self.p}:keyrec:{digest}")
        if not data:
            return None
        record = KeyRecord.from_redis(data)
        self.cache.put(digest, record, generation)
        return record

    async def create(
        self,
        *,
        team: str,
        project: str,
        name: str,
        allowed_models: list[str],
        rpm_limit: int | None,
        tpm_limit: int | None,
        budget_nusd: int | None,
        plaintext: str | None = None,
        cache: bool | None = None,
    ) -> tuple[str, KeyRecord]:
        """Mint a key; returns (plaintext, record). `plaintext` may be given to seed a known demo key."""
        if not await self.redis.sismember(f"{self.p}:teams", team):
            raise TeamNotFound(team)
        plaintext = plaintext or KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(plaintext)
        existing = await self.redis.hget(f"{self.p}:keyrec:{digest}", "key_id")
        record = KeyRecord(
            key_id=existing or "key_" + secrets.token_hex(8),
            team=team,
            project=project,
            name=name,
            key_hint=plaintext[: len(KEY_PREFIX) + 4] + "…" + plaintext[-4:],
            allowed_models=allowed_models,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            budget_nusd=budget_nusd,
            created_at=time.time(),
            cache=cache,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.p}:keyrec:{digest}", mapping=record.to_redis())
            pipe.set(f"{self.p}:keyid:{record.key_id}", digest)
            pipe.sadd(f"{self.p}:keys", record.key_id)
            await pipe.execute()
        if existing:  # re-minted (a seeded demo key): replicas may hold the old record
            await self._announce(digest)
        return plaintext, record

    async def _digest(self, key_id: str) -> str:
        digest = await self.redis.get(f"{self.p}:keyid:{key_id}")
        if digest is None:
            raise KeyNotFound(key_id)
        return str(digest)

    async def get(self, key_id: str) -> KeyRecord:
        """A key by id (revoked keys included)."""
        data = await self.redis.hgetall(f"{self.p}:keyrec:{await self._digest(key_id)}")
        if not data:
            raise KeyNotFound(key_id)
        return KeyRecord.from_redis(data)

    async def list_keys(self, team: str | None = None) -> list[KeyRecord]:
        """Every key, optionally of one team, oldest first."""
        ids = sorted(await self.redis.smembers(f"{self.p}:keys"))
        records = []
        for key_id in ids:
            try:
                record = await self.get(key_id)
            except KeyNotFound:
                continue
            if team is None or record.team == team:
                records.append(record)
        return sorted(records, key=lambda r: r.created_at)

    async def update(self, key_id: str, changes: dict[str, Any]) -> KeyRecord:
        """Apply field changes (limits, allowed models, name, status) in one HSET."""
        record = await self.get(key_id)
        for field_name, value in changes.items():
            setattr(record, field_name, value)
        digest = await self._digest(key_id)
        await self.redis.hset(f"{self.p}:keyrec:{digest}", mapping=record.to_redis())
        await self._announce(digest)
        return record

    async def upsert_team(self, team: TeamRecord) -> TeamRecord:
        """Create or replace a team's limits."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"{self.p}:teams", team.team)
            pipe.hset(
                self.team_limits_key(team.team),
                mapping={
                    "rpm_limit": str(-1 if team.rpm_limit is None else team.rpm_limit),
                    "tpm_limit": str(-1 if team.tpm_limit is None else team.tpm_limit),
                    "budget_nusd": str(-1 if team.budget_nusd is None else team.budget_nusd),
                },
            )
            await pipe.execute()
        return team

    async def get_team(self, team: str) -> TeamRecord:
        """A team's limits."""
        if not await self.redis.sismember(f"{self.p}:teams", team):
            raise TeamNotFound(team)
        data = await self.redis.hgetall(self.team_limits_key(team))
        return TeamRecord(
            team=team,
            rpm_limit=_opt_int(data.get("rpm_limit")),
            tpm_limit=_opt_int(data.get("tpm_limit")),
            budget_nusd=_opt_int(data.get("budget_nusd")),
        )

    async def list_teams(self) -> list[str]:
        """Team names, sorted."""
        return sorted(await self.redis.smembers(f"{self.p}:teams"))
