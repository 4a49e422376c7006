"""The committed OpenAPI document matches the code (regenerate with `make openapi`)."""

from __future__ import annotations

import json
from pathlib import Path

from services.registry.app import create_app
from services.registry.settings import RegistrySettings


def test_committed_openapi_matches_code() -> None:
    committed = json.loads((Path(__file__).parents[1] / "openapi.json").read_text())
    assert committed == create_app(RegistrySettings()).openapi(), "run `make openapi` and commit the result"
