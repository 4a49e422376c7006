"""The committed OpenAPI document matches the code (regenerate: python -m services.rag.openapi)."""

from __future__ import annotations

import json
from pathlib import Path

from services.rag.app import create_app
from services.rag.settings import RagSettings


def test_committed_openapi_matches_code() -> None:
    committed = json.loads((Path(__file__).parents[1] / "openapi.json").read_text())
    code = create_app(RagSettings(dev_mode=True)).openapi()
    assert committed == code, "run `python -m services.rag.openapi` and commit"
