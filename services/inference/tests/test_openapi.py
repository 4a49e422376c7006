"""The committed OpenAPI document matches the code (regenerate with `make openapi`)."""

from __future__ import annotations

from pathlib import Path

from llmops_common.openapi import render
from services.inference.app import create_app
from services.inference.settings import InferenceSettings


def test_committed_openapi_matches_code() -> None:
    """Fails when a route, schema or description changed without regenerating the document."""
    committed = (Path(__file__).parents[1] / "openapi.json").read_text()
    assert committed == render(create_app(InferenceSettings(dev_mode=True))), "run `make openapi` and commit the result"


def test_openapi_says_the_v1_routes_need_the_service_token() -> None:
    """Issue 12 row 5: the document declares the bearer service token on every /v1 route, and not on the probes."""
    document = create_app(InferenceSettings(service_token="t")).openapi()
    assert document["components"]["securitySchemes"]["serviceToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["serviceToken"]["description"],
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            secured = operation.get("security") == [{"serviceToken": []}]
            assert secured == path.startswith("/v1/"), path
