"""Write services/rag/openapi.json from the code: `python -m services.rag.openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from services.rag.app import create_app
from services.rag.settings import RagSettings

if __name__ == "__main__":
    doc = create_app(RagSettings(dev_mode=True)).openapi()
    Path(__file__).with_name("openapi.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
