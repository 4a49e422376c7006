"""The committed openapi.json matches the code (regenerate: python -m services.feedback.openapi)."""

from __future__ import annotations

from services.feedback.openapi import OPENAPI_PATH, render


def test_committed_openapi_matches_code() -> None:
    """Fails when a route, schema or description changed without regenerating the document."""
    assert OPENAPI_PATH.read_text() == render(), "run: python -m services.feedback.openapi"
