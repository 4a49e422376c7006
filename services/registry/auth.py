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
from services.registry.store import Store, principal_requests, principals


class Role(IntEnum):
    """Ordered roles: each one can do everything the roles below it can."""

    read_only = 0
    member = 1
    reviewer = 2
    admin = 3


ROLE_NAMES = {"read-only": Role.read_only, "member": Role.member, "reviewer": Role.reviewer, "admin": Role.admin}
# Tokens printed in the docs (dev mode's demo principals and default admin): never accepted outside dev mode,
# even when a store seeded in dev mode is later served without it.
DEMO_TOKENS = frozenset({"demo-reviewer-token", "demo-member-token", "demo-viewer-token", "dev-admin-token"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name, a role and an optional team."""

    name: str
    role: Role
    team: str | None = None
    created_at: float | None = None  # None for in-process actors (the seed, tests) that are not stored

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

    def __init__(self, store: Store, audit: AuditLog, *, dev_mode: bool = False) -> None:
        self.store = store
        self.audit = audit
        self.dev_mode = dev_mode

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
        """The principal holding this token, if any (the published demo tokens only in dev mode)."""
        if token in DEMO_TOKENS and not self.dev_mode:
            return None
        with self.store.read() as conn:
            row = conn.execute(select(principals).where(principals.c.token_sha256 == hash_token(token))).first()
        return Principal(row.name, ROLE_NAMES[row.role], row.team, row.created_at) if row else None

    def create(
        self,
        actor: Principal,
        name: str,
        role: str,
        team: str | None,
        token: str | None,
        *,
        direct: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Create a principal; returns its token once (only the hash is kept).

        Outside dev mode a call through the API (`direct=False`) only files a request: the principal exists,
        and its token works, once a second admin approved it (`approve_request`). `direct` is for the
        operator's tools that already hold the database (the seed, `python -m services.registry.admin`)."""
        token = token or new_token()
        digest = hash_token(token)
        now = time.time()
        with self.store.transaction() as conn:
            if conn.execute(select(principals.c.name).where(principals.c.name == name)).first():
                raise AuthError(409, "principal_exists", f"principal {name!r} already exists")
            if conn.execute(select(principals.c.name).where(principals.c.token_sha256 == digest)).first():
                raise AuthError(409, "token_in_use", "that token already belongs to another principal")
            self._no_pending(conn, name)
            if direct or self.dev_mode:
                conn.execute(
                    principals.insert().values(
                        name=name, role=role, team=team, token_sha256=digest, created_at=now, created_by=actor.name
                    )
                )
                self.audit.append(
                    conn,
                    actor=actor.name,
                    action="principal.create",
                    object_type="principal",
                    object_id=f"principal/{name}",
                    reason=reason,
                    after={"role": role, "team": team},
                )
                return {"name": name, "role": role, "team": team, "token": token, "status": "active"}
            request_id = self._file(conn, actor, "create", name, role, team, digest, reason, now)
        return {"name": name, "role": role, "team": team, "token": token, "status": "pending", "request_id": request_id}

    def set_role(self, actor: Principal, name: str, role: str, reason: str | None) -> dict[str, Any]:
        """Change a principal's role: lowering takes effect at once, raising needs a second admin (not in dev mode)."""
        with self.store.transaction() as conn:
            row = conn.execute(select(principals).where(principals.c.name == name)).first()
            if row is None:
                raise AuthError(404, "principal_not_found", f"principal {name!r} does not exist")
            if ROLE_NAMES[role] > ROLE_NAMES[row.role] and not self.dev_mode:
                self._no_pending(conn, name)
                rid = self._file(conn, actor, "elevate", name, role, row.team, None, reason, time.time())
                return {"name": name, "role": row.role, "team": row.team, "status": "pending", "request_id": rid}
            conn.execute(principals.update().where(principals.c.name == name).values(role=role))
            self.audit.append(
                conn,
                actor=actor.name,
                action="principal.role",
                object_type="principal",
                object_id=f"principal/{name}",
                reason=reason,
                before={"role": row.role},
                after={"role": role},
            )
        return {"name": name, "role": role, "team": row.team, "status": "active"}

    def _no_pending(self, conn: Any, name: str) -> None:
        pending = conn.execute(
            select(principal_requests.c.id).where(
                principal_requests.c.name == name, principal_requests.c.status == "pending"
            )
        ).first()
        if pending:
            raise AuthError(409, "request_pending", f"request {pending.id} for {name!r} is already pending",
                            existing_id=pending.id)  # fmt: skip

    def _file(
        self,
        conn: Any,
        actor: Principal,
        kind: str,
        name: str,
        role: str,
        team: str | None,
        digest: str | None,
        reason: str | None,
        now: float,
    ) -> str:
        request_id = "prq_" + secrets.token_hex(8)
        conn.execute(
            principal_requests.insert().values(
                id=request_id, kind=kind, name=name, role=role, team=team, token_sha256=digest,
                requested_by=actor.name, reason=reason, status="pending", created_at=now,
            )
        )  # fmt: skip
        self.audit.append(
            conn,
            actor=actor.name,
            action=f"principal.{kind}.request",
            object_type="principal",
            object_id=f"principal/{name}",
            reason=reason,
            after={"request": request_id, "role": role, "team": team},
        )
        return request_id

    def decide_request(self, actor: Principal, request_id: str, *, approve: bool, reason: str) -> dict[str, Any]:
        """A second admin approves or rejects a principal request (four-eyes, issue 12 row 12): not the
        requester, not the principal concerned, and an admin that existed before the request was filed."""
        now = time.time()
        with self.store.transaction() as conn:
            req = conn.execute(select(principal_requests).where(principal_requests.c.id == request_id)).first()
            if req is None:
                raise AuthError(404, "request_not_found", f"principal request {request_id!r} does not exist")
            if req.status != "pending":
                raise AuthError(409, "not_pending", f"request {request_id} is {req.status}")
            if approve:
                if actor.name in (req.requested_by, req.name):
                    raise AuthError(403, "self_approval", "four-eyes rule: a different admin must approve this")
                me = conn.execute(select(principals).where(principals.c.name == actor.name)).first()
                if me is None or me.role != "admin" or me.created_at >= req.created_at:
                    raise AuthError(403, "approver_too_new", "the approver must be an admin that existed before "
                                    "the request")  # fmt: skip
                if req.kind == "create":
                    if conn.execute(select(principals.c.name).where(principals.c.name == req.name)).first():
                        raise AuthError(409, "principal_exists", f"principal {req.name!r} already exists")
                    conn.execute(
                        principals.insert().values(
                            name=req.name, role=req.role, team=req.team, token_sha256=req.token_sha256,
                            created_at=now, created_by=req.requested_by,
                        )
                    )  # fmt: skip
                else:
                    conn.execute(principals.update().where(principals.c.name == req.name).values(role=req.role))
            status = "approved" if approve else "rejected"
            conn.execute(
                principal_requests.update()
                .where(principal_requests.c.id == request_id)
                .values(status=status, decided_by=actor.name, decided_at=now)
            )
            self.audit.append(
                conn,
                actor=actor.name,
                action=f"principal.{req.kind}.{'approve' if approve else 'reject'}",
                object_type="principal",
                object_id=f"principal/{req.name}",
                reason=reason,
                after={"request": request_id, "role": req.role, "status": status},
            )
        return self.get_request(request_id)

    def get_request(self, request_id: str) -> dict[str, Any]:
        """One principal request (never its token hash)."""
        with self.store.read() as conn:
            row = (
                conn.execute(select(principal_requests).where(principal_requests.c.id == request_id)).mappings().first()
            )
        if row is None:
            raise AuthError(404, "request_not_found", f"principal request {request_id!r} does not exist")
        return {k: v for k, v in row.items() if k != "token_sha256"}

    def list_requests(self, status: str | None) -> list[dict[str, Any]]:
        """Principal requests, newest first."""
        q = select(principal_requests)
        if status:
            q = q.where(principal_requests.c.status == status)
        with self.store.read() as conn:
            rows = conn.execute(q.order_by(principal_requests.c.created_at.desc())).mappings().all()
        return [{k: v for k, v in r.items() if k != "token_sha256"} for r in rows]

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
