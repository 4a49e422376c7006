"""Principals with bearer tokens and roles; tokens are stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sqlalchemy import select

from services.registry.audit import AuditLog
from services.registry.errors import RegistryError
from services.registry.store import Store, principals


class Role(IntEnum):
    """Ordered roles: each one can do everything the roles below it can."""

    read_only = 0
    member = 1
    reviewer = 2
    admin = 3


ROLE_NAMES = {"read-only": Role.read_only, "member": Role.member, "reviewer": Role.reviewer, "admin": Role.admin}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name, a role and an optional team."""

    name: str
    role: Role
    team: str | None = None

    @property
    def role_name(self) -> str:
        """The role as written in the API ("read-only", "member", ...)."""
        return next(k for k, v in ROLE_NAMES.items() if v == self.role)


def hash_token(token: str) -> str:
    """Tokens are long random strings, so one SHA-256 round is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token with 256 bits of entropy."""
    return "rk_" + secrets.token_urlsafe(32)


class AuthError(RegistryError):
    """Missing/unknown token (401) or insufficient role (403)."""


class PrincipalStore:
    """Principals live in the governance store; the bootstrap admin comes from settings."""

    def __init__(self, store: Store, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    def ensure_admin(self, token: str) -> None:
        """Install (or re-key) the bootstrap principal `admin` from the configured token."""
        digest = hash_token(token)
        with self.store.transaction() as conn:
            row = conn.execute(select(principals).where(principals.c.name == "admin")).first()
            if row is None:
                conn.execute(
                    principals.insert().values(
                        name="admin",
                        role="admin",
                        team=None,
                        token_sha256=digest,
                        created_at=time.time(),
                        created_by="system",
                    )
                )
                self.audit.append(
                    conn,
                    actor="system",
                    action="principal.create",
                    object_type="principal",
                    object_id="principal/admin",
                    after={"role": "admin"},
                    reason="bootstrap admin",
                )
            elif row.token_sha256 != digest:
                conn.execute(principals.update().where(principals.c.name == "admin").values(token_sha256=digest))
                self.audit.append(
                    conn,
                    actor="system",
                    action="principal.rekey",
                    object_type="principal",
                    object_id="principal/admin",
                    reason="admin token changed in settings",
                )

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding this token, if any."""
        with self.store.read() as conn:
            row = conn.execute(select(principals).where(principals.c.token_sha256 == hash_token(token))).first()
        return Principal(row.name, ROLE_NAMES[row.role], row.team) if row else None

    def create(self, actor: Principal, name: str, role: str, team: str | None, token: str | None) -> dict[str, Any]:
        """Create a principal; returns its token once (only the hash is kept)."""
        token = token or new_token()
        with self.store.transaction() as conn:
            if conn.execute(select(principals.c.name).where(principals.c.name == name)).first():
                raise AuthError(409, "principal_exists", f"principal {name!r} already exists")
            if conn.execute(select(principals.c.name).where(principals.c.token_sha256 == hash_token(token))).first():
                raise AuthError(409, "token_in_use", "that token already belongs to another principal")
            conn.execute(
                principals.insert().values(
                    name=name,
                    role=role,
                    team=team,
                    token_sha256=hash_token(token),
                    created_at=time.time(),
                    created_by=actor.name,
                )
            )
            self.audit.append(
                conn,
                actor=actor.name,
                action="principal.create",
                object_type="principal",
                object_id=f"principal/{name}",
                after={"role": role, "team": team},
            )
        return {"name": name, "role": role, "team": team, "token": token}

    def exists(self, name: str) -> bool:
        """True when a principal of that name exists."""
        with self.store.read() as conn:
            return conn.execute(select(principals.c.name).where(principals.c.name == name)).first() is not None

    def list(self) -> list[dict[str, Any]]:
        """Every principal without its token hash."""
        with self.store.read() as conn:
            rows = conn.execute(select(principals).order_by(principals.c.name)).mappings().all()
        return [
            {
                "name": r["name"],
                "role": r["role"],
                "team": r["team"],
                "created_at": r["created_at"],
                "created_by": r["created_by"],
            }
            for r in rows
        ]


def require(principal: Principal | None, role: Role) -> Principal:
    """Raise 401/403 unless the caller holds at least `role`."""
    if principal is None:
        raise AuthError(401, "unauthenticated", "this call needs `Authorization: Bearer <token>`")
    if principal.role < role:
        wanted = next(k for k, v in ROLE_NAMES.items() if v == role)
        raise AuthError(403, "forbidden", f"role {principal.role_name!r} may not do this; it needs {wanted!r} or above")
    return principal
