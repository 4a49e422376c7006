"""Render the service's OpenAPI document: `python -m services.feedback.openapi` rewrites openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


def render() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    app = create_app(FeedbackSettings(consumer_enabled=False, drift_enabled=False))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render())
    print(f"wrote {OPENAPI_PATH}")
