"""Model routes: versions with metadata, eval results, alias resolution and the catalogue."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from services.registry.auth import Principal
from services.registry.errors import RegistryError
from services.registry.routes.deps import Services, call, get_services, member, reader
from services.registry.schemas import (
    ALIAS_PATTERN,
    NAME_PATTERN,
    Catalogue,
    CatalogueEntry,
    EvalResults,
    Evaluation,
    EvaluationCreate,
    ModelVersion,
    ModelVersionCreate,
    RegisteredModel,
)

router = APIRouter(prefix="/v1", tags=["models"])
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="Registered model name.")]
VersionNo = Annotated[str, Path(pattern=r"^[0-9]+$", description="Model version number.")]
Alias = Annotated[str, Path(pattern=ALIAS_PATTERN, description="Alias such as production.")]
Svc = Annotated[Services, Depends(get_services)]


@router.get("/models", response_model=list[RegisteredModel])
async def list_models(svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """Every registered model with its aliases."""
    return await call(svc.models.list_models)


@router.get("/models/{name}/versions", response_model=list[ModelVersion])
async def list_versions(name: ModelName, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """All versions of a model, newest first."""
    return await call(svc.models.list_versions, name)


@router.post("/models/{name}/versions", response_model=ModelVersion, status_code=201)
async def register_version(
    name: ModelName, body: ModelVersionCreate, svc: Svc, who: Annotated[Principal, Depends(member)]
) -> Any:
    """Register a new model version with its metadata (the model is created on first use)."""
    return await call(svc.models.register, who, name, body)


@router.get("/models/{name}/versions/{version}", response_model=ModelVersion)
async def get_version(name: ModelName, version: VersionNo, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """One version with its metadata and aliases."""
    return await call(svc.models.get_version, name, version)


@router.post("/models/{name}/versions/{version}/evals", response_model=ModelVersion)
async def add_evals(
    name: ModelName, version: VersionNo, body: EvalResults, svc: Svc, who: Annotated[Principal, Depends(member)]
) -> Any:
    """Attach eval results to a version (policies read them at approval time)."""
    return await call(svc.models.add_evals, who, name, version, body.results, body.run_id)


def evaluator(request: Request) -> str:
    """The platform evaluator named by the bearer token (REGISTRY_EVALUATOR_TOKENS); principals' tokens do not count."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    svc = get_services(request)
    settings = svc.ctx.settings
    if scheme.lower() == "bearer" and token.strip():
        for known, name in settings.evaluator_by_token().items():
            if hmac.compare_digest(known.encode(), token.strip().encode()) and name in settings.evaluators():
                return name
    svc.ctx.metrics.auth_failures.labels("not_an_evaluator").inc()
    raise RegistryError(
        401, "unauthenticated", "this call needs a platform evaluator's token (REGISTRY_EVALUATOR_TOKENS)"
    )


@router.post("/evaluations", response_model=Evaluation, status_code=201)
async def record_evaluation(body: EvaluationCreate, svc: Svc, who: Annotated[str, Depends(evaluator)]) -> Any:
    """A platform evaluator records an evaluation (evaluator token only); the registry writes it as an MLflow run
    whose id is the evidence for `POST /v1/models/{name}/versions/{v}/evals`."""
    return await call(lambda: svc.models.record_evaluation(who, body.model, body.version, body.metrics, body.params))


@router.get("/models/{name}/aliases/{alias}", response_model=ModelVersion)
async def resolve_alias(
    name: ModelName, alias: Alias, request: Request, svc: Svc, _: Annotated[Principal, Depends(reader)]
) -> Any:
    """The version an alias points at, with everything needed to deploy it (cached for cache_ttl_s)."""
    ctx = svc.ctx
    start = time.perf_counter()
    key = ("model", name, "alias", alias)
    hit = ctx.cache.get(key)
    if hit is not None:
        ctx.metrics.cache.labels("alias", "hit").inc()
        ctx.metrics.resolve_latency.labels("model", "true").observe(time.perf_counter() - start)
        return hit
    ctx.metrics.cache.labels("alias", "miss").inc()
    value = ModelVersion.model_validate(await call(svc.models.resolve_uncached, name, alias))
    ctx.cache.put(key, value)
    ctx.metrics.resolve_latency.labels("model", "false").observe(time.perf_counter() - start)
    return value


@router.get("/catalogue", response_model=Catalogue)
async def catalogue(
    svc: Svc,
    _: Annotated[Principal, Depends(reader)],
    alias: Annotated[str, Query(pattern=ALIAS_PATTERN, description="Which alias serves traffic.")] = "production",
) -> Any:
    """Every model that has `alias`, with its version, engine and price per 1M input/output tokens."""
    key = ("catalogue", alias)
    hit = svc.ctx.cache.get(key)
    svc.ctx.metrics.cache.labels("catalogue", "hit" if hit is not None else "miss").inc()
    if hit is None:
        rows = await call(svc.models.catalogue, alias)
        hit = Catalogue(alias=alias, models=[CatalogueEntry.model_validate(r) for r in rows])
        svc.ctx.cache.put(key, hit)
    return hit
