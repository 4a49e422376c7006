"""Prompt routes: versions in MLflow's prompt registry, alias resolution and rendering."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.registry.auth import Principal
from services.registry.routes.deps import Services, call, get_services, member, reader
from services.registry.schemas import (
    ALIAS_PATTERN,
    NAME_PATTERN,
    PromptSummary,
    PromptVersion,
    PromptVersionCreate,
    RenderRequest,
    RenderResponse,
)

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])
PromptName = Annotated[str, Path(pattern=NAME_PATTERN, description="Prompt name.")]
VersionNo = Annotated[str, Path(pattern=r"^[0-9]+$", description="Prompt version number.")]
Alias = Annotated[str, Path(pattern=ALIAS_PATTERN, description="Alias such as production.")]
Svc = Annotated[Services, Depends(get_services)]


@router.get("", response_model=list[PromptSummary])
async def list_prompts(svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Every prompt with its aliases."""
    return await call(svc.prompts.list_prompts)


@router.get("/{name}/versions", response_model=list[PromptVersion])
async def list_versions(name: PromptName, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """All versions of a prompt, newest first."""
    return await call(svc.prompts.list_versions, name)


@router.post("/{name}/versions", response_model=PromptVersion, status_code=201)
async def register_version(
    name: PromptName, body: PromptVersionCreate, svc: Svc, who: Annotated[Principal, Depends(member)]
) -> Any:
    """Register a new template version (the prompt is created on first use)."""
    return await call(svc.prompts.register, who, name, body)


@router.get("/{name}/versions/{version}", response_model=PromptVersion)
async def get_version(name: PromptName, version: VersionNo, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """One version with its template and variables."""
    return await call(svc.prompts.get_version, name, version)


@router.get("/{name}/aliases/{alias}", response_model=PromptVersion)
async def resolve_alias(name: PromptName, alias: Alias, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """The version an alias points at."""
    key = ("prompt", name, "alias", alias)
    hit = svc.ctx.cache.get(key)
    svc.ctx.metrics.cache.labels("prompt_alias", "hit" if hit is not None else "miss").inc()
    if hit is None:
        hit = PromptVersion.model_validate(await call(svc.prompts.resolve, name, alias))
        svc.ctx.cache.put(key, hit)
    return hit


@router.post("/{name}/render", response_model=RenderResponse, response_model_exclude_none=True)
async def render(name: PromptName, body: RenderRequest, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Fill a version's template with variables; a missing variable is a 400 naming it."""
    return await call(svc.prompts.render, name, body.version, body.alias, body.variables)
