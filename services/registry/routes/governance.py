"""Governance routes: promotion requests, approval policies, the audit log and principals."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from services.registry.auth import Principal
from services.registry.governance_schemas import (
    AuditEntry,
    AuditVerify,
    Decision,
    Policy,
    PolicyCreate,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalOut,
    PrincipalRequest,
    PrincipalState,
    Promotion,
    PromotionCheck,
    PromotionCreate,
    PromotionTarget,
    RoleChange,
    WhoAmI,
)
from services.registry.routes.deps import Services, admin, call, get_services, member, reader, reviewer
from services.registry.schemas import NAME_PATTERN

router = APIRouter(prefix="/v1")
Svc = Annotated[Services, Depends(get_services)]
RequestId = Annotated[str, Path(pattern=r"^pr_[0-9a-f]{16}$", description="Promotion request id.")]
PrincipalRequestId = Annotated[str, Path(pattern=r"^prq_[0-9a-f]{16}$", description="Principal request id.")]


@router.post("/promotions", response_model=Promotion, status_code=201, tags=["promotions"])
async def request_promotion(body: PromotionCreate, svc: Svc, who: Annotated[Principal, Depends(member)]) -> Any:
    """Ask for an alias to move to a version; the answer shows which policies apply and whether they pass."""
    return await call(svc.promotions.create, who, body)


@router.post("/promotions/check", response_model=PromotionCheck, tags=["promotions"])
async def check_promotion(body: PromotionTarget, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Dry run: which policies would gate moving `alias` to `version`, and what each of their rules says of the
    version's eval evidence now. Creates no request and changes nothing (a reader may ask, as for the policies and
    the version themselves); the approval evaluates the same rules again when it happens."""
    return await call(svc.promotions.dry_run, body)


@router.get("/promotions", response_model=list[Promotion], tags=["promotions"])
async def list_promotions(
    svc: Svc,
    _: Annotated[Principal, Depends(reader)],
    status: Literal["pending", "approved", "rejected", "expired"] | None = None,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Promotion requests, newest first."""
    return await call(svc.promotions.list, status, name, limit)


@router.get("/promotions/{request_id}", response_model=Promotion, tags=["promotions"])
async def get_promotion(request_id: RequestId, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """One promotion request."""
    return await call(svc.promotions.get, request_id)


@router.post("/promotions/{request_id}/approve", response_model=Promotion, tags=["promotions"])
async def approve(request_id: RequestId, body: Decision, svc: Svc, who: Annotated[Principal, Depends(reviewer)]) -> Any:
    """Approve (reviewer, not the requester): policies are checked, then the alias moves."""
    return await call(svc.promotions.approve, who, request_id, body.reason)


@router.post("/promotions/{request_id}/reject", response_model=Promotion, tags=["promotions"])
async def reject(request_id: RequestId, body: Decision, svc: Svc, who: Annotated[Principal, Depends(reviewer)]) -> Any:
    """Reject: the request closes and nothing moves."""
    return await call(svc.promotions.reject, who, request_id, body.reason)


@router.get("/policies", response_model=list[Policy], tags=["policies"])
async def list_policies(svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Every approval policy."""
    return await call(svc.promotions.list_policies)


@router.put("/policies/{name}", response_model=Policy, tags=["policies"])
async def put_policy(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    body: PolicyCreate,
    svc: Svc,
    who: Annotated[Principal, Depends(admin)],
) -> Any:
    """Create or replace an approval policy (admin)."""
    return await call(svc.promotions.put_policy, who, name, body)


@router.delete("/policies/{name}", status_code=204, tags=["policies"])
async def delete_policy(
    name: Annotated[str, Path(pattern=NAME_PATTERN)], svc: Svc, who: Annotated[Principal, Depends(admin)]
) -> Response:
    """Delete an approval policy (admin)."""
    await call(svc.promotions.delete_policy, who, name)
    return Response(status_code=204)


@router.get("/audit", response_model=list[AuditEntry], tags=["audit"])
async def audit(
    svc: Svc,
    who: Annotated[Principal, Depends(reader)],
    object_id: Annotated[
        str | None, Query(max_length=512, description="e.g. model/smollm2 (also matches its versions)")
    ] = None,
    object_type: Annotated[str | None, Query(max_length=32)] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[float | None, Query(description="Unix time, inclusive.")] = None,
    until: Annotated[float | None, Query(description="Unix time, exclusive.")] = None,
    after_seq: Annotated[
        # bounded by SQL's BIGINT: a larger number did not fit the database driver and answered 500
        int, Query(ge=0, le=2**63 - 1, description="Page on: entries after this sequence number.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Audit entries in chain order, filtered by object, actor and time (who holds which role is shown to
    callers with a token only)."""
    entries = await call(
        lambda: svc.ctx.audit.query(
            object_type=object_type,
            object_id=object_id,
            actor=actor,
            since=since,
            until=until,
            after_seq=after_seq,
            limit=limit,
        )
    )
    if who.name == "anonymous":
        entries = [e for e in entries if e["object_type"] != "principal"]
    return entries


@router.get("/audit/verify", response_model=AuditVerify, tags=["audit"])
async def verify(svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Recompute the hash chain from the first entry and compare its end with the anchored head (`ok: false`
    names the first bad entry: a rewrite, a gap, a truncated tail), then compare MLflow with the log: an alias
    or governance tag changed outside the registry, or a forged `llmops.audit.*` tag, is listed in `drift`."""
    result = await call(svc.ctx.audit.verify)
    drift = await call(svc.models.drift.scan)
    if drift and result["ok"]:
        result |= {"ok": False, "problem": f"{len(drift)} change(s) in MLflow that the audit log does not record"}
    return result | {"drift": drift}


@router.get("/principals", response_model=list[PrincipalOut], tags=["principals"])
async def list_principals(svc: Svc, _: Annotated[Principal, Depends(admin)]) -> Any:
    """Every principal (admin)."""
    return await call(svc.principals.list)


@router.post(
    "/principals",
    response_model=PrincipalCreated,
    status_code=201,
    tags=["principals"],
    responses={202: {"model": PrincipalCreated, "description": "Filed: a second admin must approve it."}},
)
async def create_principal(
    body: PrincipalCreate, response: Response, svc: Svc, who: Annotated[Principal, Depends(admin)]
) -> Any:
    """Create a principal; its token is returned once and stored only as a hash (admin). Outside dev mode this
    files a request (202, `status: pending`): the principal exists once a different admin, who existed before
    the request, approves it at `POST /v1/principal-requests/{id}/approve`."""
    created = await call(
        lambda: svc.principals.create(who, body.name, body.role, body.team, body.token, reason=body.reason)
    )
    if created["status"] == "pending":
        response.status_code = 202
    return created


@router.post("/principals/{name}/role", response_model=PrincipalState, tags=["principals"])
async def change_role(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    body: RoleChange,
    response: Response,
    svc: Svc,
    who: Annotated[Principal, Depends(admin)],
) -> Any:
    """Change a principal's role (admin): lowering is immediate; raising is a request for a second admin (202)
    outside dev mode."""
    changed = await call(svc.principals.set_role, who, name, body.role, body.reason)
    if changed["status"] == "pending":
        response.status_code = 202
    return changed


@router.get("/principal-requests", response_model=list[PrincipalRequest], tags=["principals"])
async def list_principal_requests(
    svc: Svc,
    _: Annotated[Principal, Depends(admin)],
    status: Literal["pending", "approved", "rejected"] | None = None,
) -> Any:
    """Requests to create or elevate principals, newest first (admin)."""
    return await call(svc.principals.list_requests, status)


@router.post("/principal-requests/{request_id}/approve", response_model=PrincipalRequest, tags=["principals"])
async def approve_principal(
    request_id: PrincipalRequestId, body: Decision, svc: Svc, who: Annotated[Principal, Depends(admin)]
) -> Any:
    """Approve (a second admin: not the requester, not the principal, and created before the request)."""
    return await call(lambda: svc.principals.decide_request(who, request_id, approve=True, reason=body.reason))


@router.post("/principal-requests/{request_id}/reject", response_model=PrincipalRequest, tags=["principals"])
async def reject_principal(
    request_id: PrincipalRequestId, body: Decision, svc: Svc, who: Annotated[Principal, Depends(admin)]
) -> Any:
    """Reject: nothing is created or elevated."""
    return await call(lambda: svc.principals.decide_request(who, request_id, approve=False, reason=body.reason))


@router.get("/whoami", response_model=WhoAmI, tags=["principals"])
async def whoami(who: Annotated[Principal, Depends(reader)]) -> Any:
    """The caller as the registry sees them."""
    return {"name": who.name, "role": who.role_name, "team": who.team}
