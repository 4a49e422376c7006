"""Dependencies shared by the route modules: the services, the caller, and the role checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from services.registry.auth import Principal, PrincipalStore, Role, require
from services.registry.context import Context
from services.registry.datasets import DatasetService
from services.registry.models import ModelService
from services.registry.promotions import PromotionService
from services.registry.prompts import PromptService
from services.registry.store import run_sync

T = TypeVar("T")


@dataclass
class Services:
    """The service classes of one app, stored on app.state.services."""

    ctx: Context
    principals: PrincipalStore
    models: ModelService
    prompts: PromptService
    datasets: DatasetService
    promotions: PromotionService


def get_services(request: Request) -> Services:
    """The app's services."""
    return request.app.state.services


async def current_principal(request: Request) -> Principal | None:
    """The caller named by the bearer token, or None when no token was sent (401 when the token is unknown)."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    services = get_services(request)
    if scheme.lower() != "bearer" or not token.strip():
        services.ctx.metrics.auth_failures.labels("malformed").inc()
        require(None, Role.read_only)
    principal = await run_sync(services.principals.authenticate, token.strip())
    if principal is None:
        services.ctx.metrics.auth_failures.labels("unknown_token").inc()
        require(None, Role.read_only)
    return principal


def role_dependency(role: Role) -> Callable[[Request], Any]:
    """A dependency that yields the caller when they hold `role` or above."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal is None and role == Role.read_only and get_services(request).ctx.settings.anonymous_reads:
            return Principal("anonymous", Role.read_only)
        try:
            return require(principal, role)
        except Exception:
            get_services(request).ctx.metrics.auth_failures.labels("forbidden" if principal else "missing").inc()
            raise

    return dependency


reader = role_dependency(Role.read_only)
member = role_dependency(Role.member)
reviewer = role_dependency(Role.reviewer)
admin = role_dependency(Role.admin)


async def call(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking service method in a worker thread."""
    return await run_sync(fn, *args)
