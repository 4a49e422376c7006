"""Server-sent events in the OpenAI style: `data: {json}\\n\\n` frames ending with `data: [DONE]`."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def sse_frame(payload: dict[str, Any]) -> bytes:
    """Encode one JSON event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def parse_sse_data(line: bytes) -> bytes | None:
    """Return the payload of a `data:` line, or None for comments/blank/other fields."""
    if line.startswith(b"data:"):
        return line[5:].strip()
    return None
