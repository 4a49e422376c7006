"""Who is calling: a gateway key (resolved by llmops_common.identity, which follows revocations), or the admin token.

Who may call what: every /v1 route takes either. A team key sees and writes only its own team's requests,
feedback, labeling items and datasets (another team's are a 404, never a 403, so ids do not leak); the admin
token sees every team and may name one with `team`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from llmops_common.identity import Identity
from llmops_common.service_auth import bearer_token


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

    @property
    def name(self) -> str:
        """Who did it, for `created_by` fields: team/project/key id of a key, or `admin`."""
        return "admin" if self.team is None else f"{self.team}/{self.project or ''}/{self.key_id}"


class Authenticator(Protocol):
    """Turns an Authorization header into an Identity, or raises the APIError to answer (401/503)."""

    async def authenticate(self, authorization: str | None) -> Identity:
        """Authenticate one request's header."""
        ...


async def get_principal(request: Request) -> Principal:
    """FastAPI dependency: the admin token, else the gateway key's team (401 unknown or revoked, 503 no gateway)."""
    header = request.headers.get("authorization")
    admin = request.app.state.settings.admin_token
    token = bearer_token(header)
    if admin and token and secrets.compare_digest(token.encode(), admin.encode()):
        return Principal(key_id="admin", team=None)
    identity: Identity = await request.app.state.identity.authenticate(header)
    return Principal(key_id=identity.key_id, team=identity.team, project=identity.project)
