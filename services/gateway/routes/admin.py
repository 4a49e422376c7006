"""Admin API (bearer admin key): teams and virtual keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from llmops_common.errors import APIError
from llmops_common.service_auth import bearer_token
from services.gateway.admin import AdminService
from services.gateway.auth import admin_matches
from services.gateway.schemas import KeyCreated, KeyIn, KeyOut, KeyPatch, TeamIn, TeamOut


def require_admin(request: Request) -> AdminService:
    """Check the admin key and hand out the admin service."""
    presented = bearer_token(request.headers.get("authorization"))
    if not admin_matches(presented, request.app.state.settings.admin_key.get_secret_value()):
        raise APIError(401, "invalid_admin_key", "the admin API needs `Authorization: Bearer <admin key>`")
    return request.app.state.admin


router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/teams", response_model=TeamOut)
async def upsert_team(body: TeamIn, admin: AdminService = Depends(require_admin)) -> TeamOut:
    """Create a team or replace its limits."""
    return await admin.upsert_team(body)


@router.get("/teams", response_model=list[TeamOut])
async def list_teams(admin: AdminService = Depends(require_admin)) -> list[TeamOut]:
    """Every team with limits and spend."""
    return await admin.list_teams()


@router.get("/teams/{team}", response_model=TeamOut)
async def get_team(team: str, admin: AdminService = Depends(require_admin)) -> TeamOut:
    """One team with limits and spend."""
    return await admin.get_team(team)


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyIn, admin: AdminService = Depends(require_admin)) -> KeyCreated:
    """Create a key; the plaintext `key` is shown only in this answer."""
    return await admin.create_key(body)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(team: str | None = None, admin: AdminService = Depends(require_admin)) -> list[KeyOut]:
    """Keys (optionally of one team), without their secrets."""
    return await admin.list_keys(team)


@router.get("/keys/{key_id}", response_model=KeyOut)
async def get_key(key_id: str, admin: AdminService = Depends(require_admin)) -> KeyOut:
    """One key with its spend."""
    return await admin.get_key(key_id)


@router.patch("/keys/{key_id}", response_model=KeyOut)
async def update_key(key_id: str, body: KeyPatch, admin: AdminService = Depends(require_admin)) -> KeyOut:
    """Change a key's limits, allowed models or name."""
    return await admin.update_key(key_id, body)


@router.delete("/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, admin: AdminService = Depends(require_admin)) -> KeyOut:
    """Revoke a key (effective immediately)."""
    return await admin.revoke_key(key_id)
