"""Admin operations on teams and virtual keys (the routes in routes/admin.py stay thin)."""

from __future__ import annotations

from typing import Any

from llmops_common.errors import APIError
from services.gateway.keys import KeyNotFound, KeyRecord, KeyStore, TeamNotFound, TeamRecord
from services.gateway.limits import Limiter
from services.gateway.pricing import nano_to_usd, usd_to_nano
from services.gateway.schemas import KeyCreated, KeyIn, KeyOut, KeyPatch, TeamIn, TeamOut


def _usd(nano: int | None) -> float | None:
    return None if nano is None else nano_to_usd(nano)


def _nano(usd: float | None) -> int | None:
    return None if usd is None else usd_to_nano(usd)


class AdminService:
    """Create, list, update and revoke keys; manage team limits; report spend."""

    def __init__(self, keys: KeyStore, limiter: Limiter) -> None:
        self.keys = keys
        self.limiter = limiter

    async def _key_out(self, record: KeyRecord) -> dict[str, Any]:
        return {
            "key_id": record.key_id,
            "team": record.team,
            "project": record.project,
            "name": record.name,
            "key_hint": record.key_hint,
            "allowed_models": record.allowed_models,
            "rpm_limit": record.rpm_limit,
            "tpm_limit": record.tpm_limit,
            "budget_usd": _usd(record.budget_nusd),
            "spend_usd": nano_to_usd(await self.limiter.spend_nusd(record.team, record.key_id)),
            "status": record.status,
            "created_at": record.created_at,
            "cache": record.cache,
        }

    async def upsert_team(self, body: TeamIn) -> TeamOut:
        """Create or replace a team's limits."""
        await self.keys.upsert_team(TeamRecord(body.team, body.rpm_limit, body.tpm_limit, _nano(body.budget_usd)))
        return await self.get_team(body.team)

    async def get_team(self, team: str) -> TeamOut:
        """A team with spend; 404 when unknown."""
        try:
            record = await self.keys.get_team(team)
        except TeamNotFound:
            raise APIError(404, "team_not_found", f"team '{team}' does not exist") from None
        return TeamOut(
            team=team,
            rpm_limit=record.rpm_limit,
            tpm_limit=record.tpm_limit,
            budget_usd=_usd(record.budget_nusd),
            spend_usd=nano_to_usd(await self.limiter.spend_nusd(team)),
        )

    async def list_teams(self) -> list[TeamOut]:
        """Every team."""
        return [await self.get_team(t) for t in await self.keys.list_teams()]

    async def create_key(self, body: KeyIn, plaintext: str | None = None) -> KeyCreated:
        """Mint a key; the plaintext is in this answer only."""
        try:
            key, record = await self.keys.create(
                team=body.team,
                project=body.project,
                name=body.name,
                allowed_models=body.allowed_models,
                rpm_limit=body.rpm_limit,
                tpm_limit=body.tpm_limit,
                budget_nusd=_nano(body.budget_usd),
                plaintext=plaintext,
                cache=body.cache,
            )
        except TeamNotFound:
            raise APIError(
                404, "team_not_found", f"team '{body.team}' does not exist; create it first with POST /admin/teams"
            ) from None
        return KeyCreated(key=key, **await self._key_out(record))

    async def get_key(self, key_id: str) -> KeyOut:
        """A key by id; 404 when unknown."""
        try:
            return KeyOut(**await self._key_out(await self.keys.get(key_id)))
        except KeyNotFound:
            raise APIError(404, "key_not_found", f"key '{key_id}' does not exist") from None

    async def list_keys(self, team: str | None) -> list[KeyOut]:
        """Keys, optionally of one team."""
        return [KeyOut(**await self._key_out(r)) for r in await self.keys.list_keys(team)]

    async def update_key(self, key_id: str, patch: KeyPatch) -> KeyOut:
        """Change limits, allowed models or name."""
        changes = patch.model_dump(exclude_unset=True)
        # null on a field that has no "unset" state resets it: a null stored as is broke the key for good (its
        # name could not be written to Redis; `allowed_models: null` was stored and every later read of the key,
        # its requests included, failed with a 500).
        for name, reset in (("name", ""), ("allowed_models", [])):
            if name in changes and changes[name] is None:
                changes[name] = reset
        if "budget_usd" in changes:
            changes["budget_nusd"] = _nano(changes.pop("budget_usd"))
        try:
            record = await self.keys.update(key_id, changes)
        except KeyNotFound:
            raise APIError(404, "key_not_found", f"key '{key_id}' does not exist") from None
        return KeyOut(**await self._key_out(record))

    async def revoke_key(self, key_id: str) -> KeyOut:
        """Revoke: the key stops working at once on every replica (the record stays for audit)."""
        try:
            record = await self.keys.update(key_id, {"status": "revoked"})
        except KeyNotFound:
            raise APIError(404, "key_not_found", f"key '{key_id}' does not exist") from None
        return KeyOut(**await self._key_out(record))
