"""Who is calling: the gateway key's team (GET {gateway}/v1/me, cached briefly), or the admin token."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
from fastapi import Request

from llmops_common.errors import APIError


@dataclass(frozen=True)
class Principal:
    """A caller; team None means the admin, who sees every team."""

    key_id: str
    team: str | None
    project: str | None = None

    @property
    def is_admin(self) -> bool:
        """True for the admin token."""
        return self.team is None


class KeyResolver(Protocol):
    """Turns a bearer key into a Principal, or None when the key is unknown (401)."""

    async def resolve(self, key: str) -> Principal | None:
        """Resolve one key."""
        ...


class ResolverUnavailable(RuntimeError):
    """The gateway could not be asked."""


class GatewayKeyResolver:
    """Asks the gateway's /v1/me; answers (also 401s) are cached for `ttl_s` to spare the gateway."""

    def __init__(self, gateway_url: str, ttl_s: float, client: httpx.AsyncClient | None = None) -> None:
        self.url = gateway_url.rstrip("/") + "/v1/me"
        self.ttl_s = ttl_s
        self.client = client or httpx.AsyncClient(timeout=5.0)
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, key: str) -> Principal | None:
        """The key's principal, from cache or the gateway."""
        digest = hashlib.sha256(key.encode()).hexdigest()  # never keep raw keys in memory longer than needed
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        try:
            resp = await self.client.get(self.url, headers={"authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise ResolverUnavailable(str(exc)) from exc
        if resp.status_code in (401, 403):
            principal = None
        elif resp.status_code == 200:
            body = resp.json()
            principal = Principal(key_id=str(body["key_id"]), team=str(body["team"]), project=body.get("project"))
        else:
            raise ResolverUnavailable(f"gateway /v1/me answered {resp.status_code}")
        if len(self._cache) > 10_000:  # bound memory under key-guessing traffic
            self._cache.clear()
        self._cache[digest] = (now + self.ttl_s, principal)
        return principal

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


class StaticKeyResolver:
    """A fixed key -> principal map, for tests and demos without a gateway."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self.keys = keys

    async def resolve(self, key: str) -> Principal | None:
        """Look the key up."""
        return self.keys.get(key)


async def get_principal(request: Request) -> Principal:
    """FastAPI dependency: authenticate the Authorization: Bearer header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "missing_api_key", "send your gateway key as 'Authorization: Bearer <key>'")
    token = token.strip()
    admin = request.app.state.settings.admin_token
    if admin and secrets.compare_digest(token.encode(), admin.encode()):
        return Principal(key_id="admin", team=None)
    try:
        principal = await request.app.state.resolver.resolve(token)
    except ResolverUnavailable as exc:
        raise APIError(503, "auth_unavailable", f"could not verify the key with the gateway: {exc}") from exc
    if principal is None:
        raise APIError(401, "invalid_api_key", "the key is not valid")
    return principal
