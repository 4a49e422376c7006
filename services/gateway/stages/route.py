"""Stage 4, route: the body for each deployment of the route, then the first deployment that answers (ordered,
with retries, fallback and circuit breakers in UpstreamClient). No deployment: 429 when all are at capacity,
503 (with Retry-After) when every circuit is open, else 502."""

from __future__ import annotations

import math

import orjson

from llmops_common.errors import APIError
from services.gateway.requests import PATHS, ClientRequest
from services.gateway.routing import ModelRoute
from services.gateway.stages.base import NoPost, RequestContext
from services.gateway.upstream import NoDeploymentAvailable, UpstreamClient


def upstream_body(req: ClientRequest, upstream_model: str, route: ModelRoute) -> bytes:
    """The body one deployment gets: the checked payload under the deployment's own model name."""
    body = dict(req.payload, model=upstream_model)
    if route.mean_logprob:  # internal: clients cannot send this field (the gateway refuses unknown fields)
        body["mean_logprob"] = True
    if req.stream:
        body["stream_options"] = {"include_usage": True}  # metering needs the final usage chunk
    return orjson.dumps(body)


def unavailable(model: str, exc: NoDeploymentAvailable) -> APIError:
    """The refusal when no deployment could take the request."""
    if exc.all_overloaded:
        return APIError(
            429,
            "upstream_overloaded",
            f"every deployment of '{model}' is at capacity; retry shortly",
            # The deployments' own hint (the soonest), from their measured service time.
            headers={"retry-after": str(max(1, math.ceil(exc.retry_after_s)))},
        )
    return APIError(
        503 if exc.all_open else 502,
        "no_deployment_available",
        f"no deployment of '{model}' could serve the request: " + "; ".join(exc.attempts),
        # Every circuit open: say when the first one lets a request through (a 503 must tell when to come back; a
        # restarting engine otherwise saw clients retry at once for the whole cool-down).
        headers={"retry-after": str(max(1, math.ceil(exc.retry_after_s)))} if exc.all_open else None,
    )


class Route(NoPost):
    name = "route"

    def __init__(self, upstream: UpstreamClient) -> None:
        self.upstream = upstream

    async def pre(self, ctx: RequestContext) -> None:
        req, route = ctx.req, ctx.route
        bodies = {dep.name: upstream_body(req, dep.model, route) for dep in route.deployments}
        try:
            ctx.up = await self.upstream.open(route, PATHS[req.kind], bodies, req.stream)
        except NoDeploymentAvailable as exc:
            raise unavailable(req.model, exc) from None
