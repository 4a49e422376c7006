"""A JSON response rendered by orjson (FastAPI deprecated its own orjson response class)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSONBytesResponse(JSONResponse):
    """Same contract as JSONResponse, serialised with orjson (fast, handles datetimes and numpy scalars)."""

    def render(self, content: Any) -> bytes:
        """Serialise the content."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
