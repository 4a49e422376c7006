"""The committed OpenAPI document matches the code (regenerate with `make openapi`)."""

from __future__ import annotations

from pathlib import Path

from llmops_common.openapi import render
from services.rag.app import create_app
from services.rag.settings import RagSettings

COMMITTED = Path(__file__).parents[1] / "openapi.json"


def test_committed_openapi_matches_code() -> None:
    """Fails when a route, schema or description changed without regenerating the document."""
    assert COMMITTED.read_text() == render(create_app(RagSettings(dev_mode=True))), (
        "run `make openapi` and commit the result"
    )
