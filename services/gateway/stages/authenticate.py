"""Stage 1, authenticate: the bearer key to its record (401 for a missing, unknown or revoked key)."""

from __future__ import annotations

from llmops_common.errors import APIError
from llmops_common.service_auth import bearer_token
from services.gateway.keys import KeyRecord, KeyStore
from services.gateway.metrics import GatewayMetrics


class Authenticate:
    """Runs before any context exists (and for /v1/models, /v1/me, batch): its product is the key's record."""

    name = "authenticate"

    def __init__(self, keys: KeyStore, metrics: GatewayMetrics) -> None:
        self.keys = keys
        self.metrics = metrics

    async def run(self, authorization: str | None) -> KeyRecord:
        token = bearer_token(authorization)
        if token is None:
            self.metrics.auth_failures.labels("missing").inc()
            raise APIError(401, "missing_api_key", "no API key: send `Authorization: Bearer <key>`")
        record = await self.keys.lookup(token)
        if record is None:
            self.metrics.auth_failures.labels("unknown").inc()
            raise APIError(401, "invalid_api_key", "the API key is not valid")
        if record.status != "active":
            self.metrics.auth_failures.labels("revoked").inc()
            raise APIError(401, "revoked_api_key", "the API key has been revoked")
        return record
