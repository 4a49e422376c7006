"""The service-token guard and the security headers every service sends (in-process, no network)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmops_common.service_auth import (
    MissingServiceToken,
    SecurityHeadersMiddleware,
    install_service_auth,
    require_tokens,
    service_headers,
)


def _app(tokens: list[str], prefixes: list[str] | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SecurityHeadersMiddleware)

    @app.get("/v1/thing")
    async def thing() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"ok": "public"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_service_auth(app, tokens, service="demo", protected_prefixes=prefixes)
    return app


def test_a_direct_call_without_the_service_token_is_refused() -> None:
    client = TestClient(_app(["s3cret"]))
    resp = client.get("/v1/thing")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "service_token_required"
    wrong = client.get("/v1/thing", headers={"authorization": "Bearer guess"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_service_token"


def test_the_service_token_and_a_rotated_one_are_accepted() -> None:
    client = TestClient(_app(["old", "new"]))
    assert client.get("/v1/thing", headers=service_headers("new")).json() == {"ok": "yes"}
    assert client.get("/v1/thing", headers=service_headers("old")).status_code == 200


def test_probes_stay_open_and_prefixes_limit_the_guard() -> None:
    client = TestClient(_app(["t"], prefixes=["/v1/"]))
    assert client.get("/healthz").status_code == 200
    assert client.get("/public").status_code == 200
    assert client.get("/v1/thing").status_code == 401


def test_every_response_carries_the_security_headers() -> None:
    client = TestClient(_app(["t"]))
    for resp in (client.get("/healthz"), client.get("/v1/thing")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"


def test_no_token_outside_dev_mode_fails_the_start() -> None:
    with pytest.raises(MissingServiceToken, match="DEMO_SERVICE_TOKEN"):
        require_tokens([None, ""], service="demo", setting="DEMO_SERVICE_TOKEN", dev_mode=False)
    assert require_tokens([None], service="demo", setting="DEMO_SERVICE_TOKEN", dev_mode=True) == []
    assert require_tokens(["a", None], service="demo", setting="X", dev_mode=False) == ["a"]
