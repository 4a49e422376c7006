"""Request and response bodies of the registry's governance API: approval policies, promotions and their dry
runs, the audit chain, principals and roles (unknown fields are refused, as in `schemas`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.registry.schemas import AliasName, Name, Strict


class Threshold(Strict):
    """Bounds a metric must meet; at least one of min/max."""

    min: float | None = None
    max: float | None = None


class PolicyCreate(Strict):
    """An approval policy: which objects/aliases it covers and which eval results it requires."""

    object_type: Literal["model", "prompt"]
    name_pattern: str = Field("*", max_length=256, description="Glob on the object name (fnmatch).")
    aliases: list[AliasName] = Field(default_factory=lambda: ["production"], min_length=1)
    required_evals: dict[str, Threshold] = Field(default_factory=dict)
    version_tags: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description='Applies only to versions whose tags include every one of these (e.g. {"finetuned": "true"}: '
        "a gate on fine-tuning evidence that a plain re-registration of the same model does not need); empty: "
        "every version.",
    )


class Policy(PolicyCreate):
    """A stored policy."""

    model_config = ConfigDict(extra="ignore")

    name: str
    created_by: str
    created_at: float


class PromotionTarget(Strict):
    """An alias move to a version (what `POST /v1/promotions/check` evaluates)."""

    object_type: Literal["model", "prompt"]
    name: Name
    alias: AliasName
    version: str = Field(pattern=r"^[0-9]+$")


class PromotionCreate(PromotionTarget):
    """Ask for an alias to move to a version."""

    reason: str = Field(min_length=1, max_length=2000, description="Why: shown to reviewers and in the audit log.")


class Decision(Strict):
    """A reviewer's decision note."""

    reason: str = Field(min_length=1, max_length=2000)


class PolicyCheck(BaseModel):
    """The outcome of the policies that apply to a promotion."""

    policies: list[str]
    passed: bool
    failures: list[str]


class RuleOutcome(BaseModel):
    """One required metric of one applied policy, against the version's eval evidence."""

    policy: str
    metric: str
    min: float | None
    max: float | None
    value: float | None = Field(description="The evidence; a self-reported number when `source` says so.")
    source: Literal["evidence", "self-reported", "missing"]
    passed: bool
    message: str


class PromotionCheck(PolicyCheck):
    """Dry run of a promotion: what the policies say now, rule by rule; nothing is requested or moved."""

    object_type: str
    name: str
    alias: str
    version: str
    current_version: str | None = Field(description="Where the alias points now (null: nowhere yet).")
    version_tags: dict[str, str] = Field(description="The version's tags as policies see them (`finetuned`: derived).")
    rules: list[RuleOutcome]
    not_applied: list[dict[str, str]] = Field(description="Policies of this alias that a `version_tags` scope skips.")


class Promotion(BaseModel):
    """A promotion request and its outcome."""

    id: str
    object_type: str
    name: str
    alias: str
    version: str
    from_version: str | None
    requested_by: str
    reason: str | None
    status: Literal["pending", "approved", "rejected", "expired"]
    created_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    decision_reason: str | None
    policy_check: PolicyCheck | None = None


class AuditEntry(BaseModel):
    """One link of the audit chain."""

    seq: int
    ts: float
    actor: str
    action: str
    object_type: str
    object_id: str
    reason: str | None
    before: Any
    after: Any
    prev_hash: str
    hash: str


class AuditVerify(BaseModel):
    """The result of recomputing the chain, comparing its end with the anchored head, and comparing MLflow's
    aliases and governance tags with the log."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str | None
    head_hash: str | None = None
    anchor: dict[str, Any] | None = Field(None, description="The head (seq, hash) kept in the governance store.")
    drift: list[dict[str, str]] = Field(
        default_factory=list, description="Objects changed in MLflow outside the registry (not served)."
    )


class PrincipalCreate(Strict):
    """A new principal; a token is generated unless one is given."""

    name: Name
    role: Literal["admin", "reviewer", "member", "read-only"]
    team: str | None = Field(None, max_length=128)
    token: str | None = Field(None, min_length=16, max_length=256)
    reason: str | None = Field(None, max_length=2000, description="Why: shown to the approving admin.")


class PrincipalOut(BaseModel):
    """A principal (never its token)."""

    name: str
    role: str
    team: str | None
    created_at: float
    created_by: str


class PrincipalCreated(BaseModel):
    """The created principal and its token, shown this once. Outside dev mode it is `pending` (the token does
    not work yet) until a second admin approves `request_id`."""

    name: str
    role: str
    team: str | None
    token: str
    status: Literal["active", "pending"] = "active"
    request_id: str | None = None


class RoleChange(Strict):
    """A new role; raising one is a request for a second admin outside dev mode."""

    role: Literal["admin", "reviewer", "member", "read-only"]
    reason: str | None = Field(None, max_length=2000)


class PrincipalState(BaseModel):
    """A principal after a role change (or the pending request for it)."""

    name: str
    role: str
    team: str | None
    status: Literal["active", "pending"]
    request_id: str | None = None


class PrincipalRequest(BaseModel):
    """A request to create or elevate a principal, decided by a second admin."""

    id: str
    kind: Literal["create", "elevate"]
    name: str
    role: str
    team: str | None
    requested_by: str
    reason: str | None
    status: Literal["pending", "approved", "rejected"]
    created_at: float
    decided_by: str | None
    decided_at: float | None


class WhoAmI(BaseModel):
    """The caller as the registry sees it."""

    name: str
    role: str
    team: str | None
