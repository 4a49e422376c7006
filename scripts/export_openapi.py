"""Write services/<name>/openapi.json from each service's app factory (`make openapi`)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from llmops_common.openapi import render  # noqa: E402


def main(names: list[str]) -> None:
    """Export the named services (default: every service with an app.py)."""
    os.environ.setdefault("GATEWAY_DEV_MODE", "true")
    # Internal services refuse to start without their service token; the document is the same either way.
    os.environ.setdefault("INFERENCE_DEV_MODE", "true")
    os.environ.setdefault("GUARDRAILS_DEV_MODE", "true")
    os.environ.setdefault("RAG_DEV_MODE", "true")
    names = names or sorted(p.parent.name for p in (REPO / "services").glob("*/app.py"))
    for name in names:
        module = importlib.import_module(f"services.{name}.app")
        app = module.create_app()
        target = REPO / "services" / name / "openapi.json"
        target.write_text(render(app))
        print(f"wrote {target.relative_to(REPO)} ({len(app.openapi().get('paths', {}))} paths)")


if __name__ == "__main__":
    main(sys.argv[1:])
