"""Dataset routes: versions with content hash, schema, size, source and producing run."""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request

from services.registry.auth import Principal, Role
from services.registry.errors import RegistryError
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


ON_BEHALF = "x-llmops-on-behalf-of"
# Who a platform service acts for: a gateway key's `team/project/key_id`, or a service's own admin (`feedback-admin`).
_BEHALF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


async def registrant(
    request: Request,
    behalf: Annotated[
        str | None,
        Header(
            alias=ON_BEHALF,
            description="Only with a platform service's token (REGISTRY_SERVICE_TOKENS, e.g. feedback's): the "
            "caller it registers for, recorded as `created_by`. From a principal's token: 403 on_behalf_not_allowed.",
        ),
    ] = None,
) -> tuple[Principal, str | None]:
    """Who registers: a member principal, or a platform service (REGISTRY_SERVICE_TOKENS) acting for the caller it
    names in X-LLMOps-On-Behalf-Of (issue 12, row 8: `created_by` is the real caller, not the service's principal).
    Only a service token may name someone else; a principal that tries is refused (403 on_behalf_not_allowed)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    svc = get_services(request)
    if scheme.lower() == "bearer" and token.strip():
        for known, service in svc.ctx.settings.service_by_token().items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                if behalf is None or not _BEHALF.match(behalf):
                    raise RegistryError(
                        400,
                        "invalid_on_behalf_of",
                        f"a service registers for its caller: send {ON_BEHALF} with the caller's principal "
                        "(letters, digits and . _ : / @ -; at most 200)",
                    )
                return Principal(f"service:{service}", Role.member), behalf
    who: Principal = await member(request)
    if behalf is not None:
        svc.ctx.metrics.auth_failures.labels("on_behalf_not_allowed").inc()
        raise RegistryError(
            403,
            "on_behalf_not_allowed",
            f"only a platform service (REGISTRY_SERVICE_TOKENS) may register on behalf of someone else; "
            f"drop {ON_BEHALF}",
        )
    return who, None


@router.post("/{name}/versions", response_model=DatasetVersion, response_model_by_alias=True, status_code=201)
async def register_version(
    name: DatasetName,
    body: DatasetVersionCreate,
    svc: Svc,
    who: Annotated[tuple[Principal, str | None], Depends(registrant)],
) -> Any:
    """Register the next version; the same content hash twice is a 409. `created_by` is the caller, or, for a
    platform service (feedback's exports), the principal it names in `X-LLMOps-On-Behalf-Of`."""
    return await call(svc.datasets.register, who[0], name, body, who[1])


@router.get("/{name}/versions/{version}", response_model=DatasetVersion, response_model_by_alias=True)
async def get_version(
    name: DatasetName, version: Annotated[int, Path(ge=1)], svc: Svc, _: Annotated[Principal, Depends(reader)]
) -> Any:
    """One dataset version."""
    return await call(svc.datasets.get, name, version)
