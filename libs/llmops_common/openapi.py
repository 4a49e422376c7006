"""A service's OpenAPI document as it is committed (`services/<name>/openapi.json`): the one renderer that
`make openapi` (scripts/export_openapi.py) writes with and every service's test compares with."""

from __future__ import annotations

import json

from fastapi import FastAPI


def render(app: FastAPI) -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
