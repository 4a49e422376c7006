"""Dataset routes: versions with content hash, schema, size, source and producing run."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.registry.auth import Principal
from services.registry.routes.deps import Services, call, get_services, member, reader
from services.registry.schemas import NAME_PATTERN, DatasetVersion, DatasetVersionCreate

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, description="Dataset name.")]
Svc = Annotated[Services, Depends(get_services)]


@router.get("")
async def list_datasets(svc: Svc, _: Annotated[Principal, Depends(reader)]) -> list[dict[str, Any]]:
    """Every dataset with its latest version."""
    return await call(svc.datasets.list_names)


@router.get("/{name}/versions", response_model=list[DatasetVersion], response_model_by_alias=True)
async def list_versions(name: DatasetName, svc: Svc, _: Annotated[Principal, Depends(reader)]) -> Any:
    """All versions of a dataset, newest first."""
    return await call(svc.datasets.list_versions, name)


@router.post("/{name}/versions", response_model=DatasetVersion, response_model_by_alias=True, status_code=201)
async def register_version(
    name: DatasetName, body: DatasetVersionCreate, svc: Svc, who: Annotated[Principal, Depends(member)]
) -> Any:
    """Register the next version; the same content hash twice is a 409."""
    return await call(svc.datasets.register, who, name, body)


@router.get("/{name}/versions/{version}", response_model=DatasetVersion, response_model_by_alias=True)
async def get_version(
    name: DatasetName, version: Annotated[int, Path(ge=1)], svc: Svc, _: Annotated[Principal, Depends(reader)]
) -> Any:
    """One dataset version."""
    return await call(svc.datasets.get, name, version)
