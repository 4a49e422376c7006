"""Promotion requests (four-eyes approval of alias moves) and the approval policies that gate them."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from sqlalchemy import select

from services.registry import policy_check
from services.registry.auth import Principal
from services.registry.context import Context
from services.registry.errors import RegistryError
from services.registry.governance_schemas import PolicyCreate, PromotionCreate, PromotionTarget
from services.registry.models import ModelService
from services.registry.prompts import PromptService
from services.registry.store import policies, promotions


class PromotionService:
    """Create, approve, reject and expire promotion requests; only an approval moves an alias."""

    def __init__(self, ctx: Context, models: ModelService, prompts: PromptService) -> None:
        self.ctx = ctx
        self.models = models
        self.prompts = prompts
        self.drift = models.drift

    # -- policies -------------------------------------------------------------------------------------------
    def put_policy(self, actor: Principal, name: str, body: PolicyCreate) -> dict[str, Any]:
        """Create or replace a policy."""
        row = body.model_dump(mode="json") | {"name": name, "created_by": actor.name, "created_at": time.time()}
        with self.ctx.store.transaction() as conn:
            old = conn.execute(select(policies).where(policies.c.name == name)).mappings().first()
            if old:
                conn.execute(policies.update().where(policies.c.name == name).values(**row))
            else:
                conn.execute(policies.insert().values(**row))
            entry = self.ctx.audit.append(
                conn,
                actor=actor.name,
                action="policy.put",
                object_type="policy",
                object_id=f"policy/{name}",
                before=dict(old) if old else None,
                after=row,
            )
        self.ctx.after_commit(entry)
        return row

    def list_policies(self) -> list[dict[str, Any]]:
        """Every policy."""
        with self.ctx.store.read() as conn:
            rows = [dict(r) for r in conn.execute(select(policies).order_by(policies.c.name)).mappings()]
        return [r | {"version_tags": r.get("version_tags") or {}} for r in rows]  # NULL: a row from before the column

    def delete_policy(self, actor: Principal, name: str) -> None:
        """Remove a policy (404 when unknown)."""
        with self.ctx.store.transaction() as conn:
            old = conn.execute(select(policies).where(policies.c.name == name)).mappings().first()
            if old is None:
                raise RegistryError(404, "policy_not_found", f"policy {name!r} does not exist")
            conn.execute(policies.delete().where(policies.c.name == name))
            entry = self.ctx.audit.append(
                conn,
                actor=actor.name,
                action="policy.delete",
                object_type="policy",
                object_id=f"policy/{name}",
                before=dict(old),
            )
        self.ctx.after_commit(entry)

    def check(self, object_type: str, name: str, alias: str, target: dict[str, Any]) -> dict[str, Any]:
        """Evaluate every policy covering this object and alias against the target version's eval evidence."""
        result = policy_check.evaluate(self.list_policies(), object_type, name, alias, target)
        return {k: result[k] for k in ("policies", "passed", "failures")}

    def dry_run(self, body: PromotionTarget) -> dict[str, Any]:
        """What an approval of this promotion would say of the policies now, rule by rule; creates nothing (no
        request, no audit entry). Four-eyes still applies to the real request."""
        target, aliases = self._target(body.object_type, body.name, body.version)
        result = policy_check.evaluate(self.list_policies(), body.object_type, body.name, body.alias, target)
        return (
            body.model_dump()
            | {"current_version": aliases.get(body.alias), "version_tags": target.get("tags") or {}}
            | result
        )

    # -- requests -------------------------------------------------------------------------------------------
    def _target(self, object_type: str, name: str, version: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The version to promote, and the object's alias map."""
        if object_type == "model":
            return self.models.get_version(name, version), self.models.aliases(name)
        return self.prompts.get_version(name, version), self.prompts.aliases(name)

    def create(self, actor: Principal, body: PromotionCreate) -> dict[str, Any]:
        """File a request; nothing moves until a different reviewer approves it."""
        key = f"{body.object_type}/{body.name}"
        with self.ctx.object_lock(key):
            target, aliases = self._target(body.object_type, body.name, body.version)
            current = aliases.get(body.alias)
            if current == body.version:
                raise RegistryError(409, "no_change", f"alias {body.alias!r} already points at version {body.version}")
            self.expire_due()
            with self.ctx.store.read() as conn:
                dup = conn.execute(
                    select(promotions.c.id).where(
                        promotions.c.object_type == body.object_type,
                        promotions.c.name == body.name,
                        promotions.c.alias == body.alias,
                        promotions.c.version == body.version,
                        promotions.c.status == "pending",
                    )
                ).first()
            if dup:
                raise RegistryError(
                    409,
                    "duplicate_request",
                    f"request {dup.id} for this promotion is already pending",
                    existing_id=dup.id,
                )
            now = time.time()
            row = {
                "id": "pr_" + secrets.token_hex(8),
                "object_type": body.object_type,
                "name": body.name,
                "alias": body.alias,
                "version": body.version,
                "from_version": current,
                "requested_by": actor.name,
                "reason": body.reason,
                "status": "pending",
                "created_at": now,
                "expires_at": now + self.ctx.settings.promotion_ttl_s,
                "decided_by": None,
                "decided_at": None,
                "decision_reason": None,
                "policy": None,
            }
            with self.ctx.store.transaction() as conn:
                conn.execute(promotions.insert().values(**row))
                entry = self.ctx.audit.append(
                    conn,
                    actor=actor.name,
                    action="promotion.request",
                    object_type=body.object_type,
                    object_id=key,
                    reason=body.reason,
                    before={"alias": body.alias, "version": current},
                    after={"alias": body.alias, "version": body.version, "request": row["id"]},
                )
        self._after(entry, row)
        self.ctx.metrics.promotions.labels(body.object_type, "requested").inc()
        return row | {"policy_check": self.check(body.object_type, body.name, body.alias, target)}

    def get(self, request_id: str) -> dict[str, Any]:
        """One request (expired ones are marked so first)."""
        self.expire_due()
        with self.ctx.store.read() as conn:
            row = conn.execute(select(promotions).where(promotions.c.id == request_id)).mappings().first()
        if row is None:
            raise RegistryError(404, "promotion_not_found", f"promotion request {request_id!r} does not exist")
        return dict(row)

    def list(self, status: str | None, name: str | None, limit: int) -> list[dict[str, Any]]:
        """Requests, newest first."""
        self.expire_due()
        q = select(promotions)
        if status:
            q = q.where(promotions.c.status == status)
        if name:
            q = q.where(promotions.c.name == name)
        with self.ctx.store.read() as conn:
            return [dict(r) for r in conn.execute(q.order_by(promotions.c.created_at.desc()).limit(limit)).mappings()]

    def expire_due(self) -> int:
        """Mark pending requests past their deadline as expired (they change nothing)."""
        now = time.time()
        with self.ctx.store.read() as conn:
            due = (
                conn.execute(select(promotions).where(promotions.c.status == "pending", promotions.c.expires_at <= now))
                .mappings()
                .all()
            )
        for row in due:
            with self.ctx.store.transaction() as conn:
                done = conn.execute(
                    promotions.update()
                    .where(promotions.c.id == row["id"], promotions.c.status == "pending")
                    .values(status="expired", decided_at=now, decided_by="system")
                ).rowcount
                if not done:
                    continue
                entry = self.ctx.audit.append(
                    conn,
                    actor="system",
                    action="promotion.expire",
                    object_type=row["object_type"],
                    object_id=f"{row['object_type']}/{row['name']}",
                    after={"request": row["id"], "status": "expired"},
                )
            self._after(entry, dict(row) | {"status": "expired"})
            self.ctx.metrics.promotions.labels(row["object_type"], "expired").inc()
        return len(due)

    def bootstrap_alias(self, actor: Principal, object_type: str, name: str, alias: str, version: str) -> bool:
        """First assignment of an alias by an admin tool (the seed); refuses to move an alias that exists."""
        key = f"{object_type}/{name}"
        with self.ctx.object_lock(key):
            _, aliases = self._target(object_type, name, version)
            if alias in aliases:
                return False
            row = {"object_type": object_type, "name": name, "alias": alias}
            self._set_alias(row, version)
            try:
                entry = self.ctx.record(
                    actor=actor.name,
                    action="alias.bootstrap",
                    object_type=object_type,
                    object_id=key,
                    reason="initial assignment by the seed",
                    before={"alias": alias, "version": None},
                    after={"alias": alias, "version": version},
                )
            except BaseException:
                self._set_alias(row, None)
                raise
        return bool(entry)

    def reject(self, actor: Principal, request_id: str, reason: str) -> dict[str, Any]:
        """Close a pending request without moving anything."""
        return self._decide(actor, request_id, reason, approve=False)

    def approve(self, actor: Principal, request_id: str, reason: str) -> dict[str, Any]:
        """Four-eyes approval: the requester may not approve; policies must pass; then the alias moves."""
        return self._decide(actor, request_id, reason, approve=True)

    def _decide(self, actor: Principal, request_id: str, reason: str, *, approve: bool) -> dict[str, Any]:
        row = self.get(request_id)
        key = f"{row['object_type']}/{row['name']}"
        with self.ctx.object_lock(key):
            row = self.get(request_id)
            if row["status"] != "pending":
                code = "promotion_expired" if row["status"] == "expired" else "not_pending"
                raise RegistryError(409, code, f"request {request_id} is {row['status']}; it can no longer be decided")
            if approve and row["requested_by"] == actor.name:
                raise RegistryError(403, "self_approval", "four-eyes rule: a different reviewer must approve this")
            if approve and actor.created_at is not None and actor.created_at >= row["created_at"]:
                # A reviewer minted after the request (e.g. by the requester) is not an independent second pair of eyes.
                raise RegistryError(
                    403, "approver_too_new", "the approver must be a principal that existed before the request"
                )
            check = None
            moved_from = None
            if approve:
                self.drift.guard(row["object_type"], row["name"], relock=False)  # never build on a tampered object
                target, aliases = self._target(row["object_type"], row["name"], row["version"])
                check = self.check(row["object_type"], row["name"], row["alias"], target)
                if not check["passed"]:
                    raise RegistryError(422, "policy_not_met", "; ".join(check["failures"]), policy_check=check)
                moved_from = aliases.get(row["alias"])
                self._set_alias(row, row["version"])
            status = "approved" if approve else "rejected"
            now = time.time()
            try:
                with self.ctx.store.transaction() as conn:
                    done = conn.execute(
                        promotions.update()
                        .where(promotions.c.id == request_id, promotions.c.status == "pending")
                        .values(
                            status=status,
                            decided_by=actor.name,
                            decided_at=now,
                            decision_reason=reason,
                            policy=",".join(check["policies"]) if check else None,
                        )
                    ).rowcount
                    if not done:
                        raise RegistryError(409, "not_pending", f"request {request_id} was decided concurrently")
                    entry = self.ctx.audit.append(
                        conn,
                        actor=actor.name,
                        action="promotion.approve" if approve else "promotion.reject",
                        object_type=row["object_type"],
                        object_id=key,
                        reason=reason,
                        before={"alias": row["alias"], "version": moved_from if approve else row["from_version"]},
                        after={
                            "alias": row["alias"],
                            "version": row["version"] if approve else moved_from,
                            "request": request_id,
                            "status": status,
                            "policy_check": check,
                        },
                    )
            except BaseException:
                if approve:
                    self._set_alias(row, moved_from)  # put the alias back: a failed approval changes nothing
                raise
        out = self.get(request_id)
        self._after(entry, out)
        self.ctx.metrics.promotions.labels(row["object_type"], status).inc()
        return out | {"policy_check": check}

    def _set_alias(self, row: dict[str, Any], version: str | None) -> None:
        client = self.ctx.mlflow.client
        name, alias = row["name"], row["alias"]
        if row["object_type"] == "model":
            if version is None:
                self.ctx.mlflow.call(client.delete_registered_model_alias, name, alias)
            else:
                self.ctx.mlflow.call(client.set_registered_model_alias, name, alias, version)
            self.models.invalidate(name)
        else:
            if version is None:
                self.ctx.mlflow.call(client.delete_prompt_alias, name, alias)
            else:
                self.ctx.mlflow.call(client.set_prompt_alias, name, alias, int(version))
            self.ctx.cache.invalidate(("prompt", name))

    def _after(self, entry: dict[str, Any], row: dict[str, Any]) -> None:
        """Mirror the audit entry and show the request's state as a tag on the MLflow object."""
        self.ctx.after_commit(entry)
        summary = json.dumps(
            {
                k: row.get(k)
                for k in ("alias", "version", "from_version", "status", "requested_by", "decided_by", "reason")
            }
        )
        client = self.ctx.mlflow.client
        setter = client.set_registered_model_tag if row["object_type"] == "model" else client.set_prompt_tag
        try:
            self.ctx.mlflow.call(setter, row["name"], f"llmops.promotion.{row['id']}", summary[:5000])
        except Exception:  # the store is authoritative; the tag is a courtesy for MLflow's UI
            self.ctx.metrics.mirror_failures.inc()
