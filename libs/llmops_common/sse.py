"""Server-sent events in the OpenAI style: `data: {json}\\n\\n` frames ending with `data: [DONE]`.

One writer (`sse_frame`, `DONE`) and one reader (`SSEReader`) for every service: the gateway relaying a
deployment's stream, inference reading an OpenAI-compatible upstream, RAG reading the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
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


class SSEReader:
    """The `data:` payloads (bytes) of a stream of lines, up to `data: [DONE]` (not yielded).

    `done` tells afterwards whether the stream said [DONE]: a stream that just closes cannot be told apart from
    one cut short, so callers treat that as an error. Lines are bytes (aiohttp's `resp.content`, llmops_common.http);
    comments, blank lines and other fields are skipped.
    """

    def __init__(self, lines: AsyncIterable[bytes]) -> None:
        self._lines = lines
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Each event's data, in order."""
        async for line in self._lines:
            data = parse_sse_data(line)
            if data is None:
                continue
            if data == b"[DONE]":
                self.done = True
                return
            yield data

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Each event's data parsed as JSON (a ValueError when it is not)."""
        async for data in self:
            yield orjson.loads(data)
