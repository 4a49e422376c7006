"""The engine interface the serving layer talks to, and the errors engines raise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

Kind = Literal["chat", "completion"]


class EngineError(Exception):
    """The engine refused the request (bad input): carries an HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class EngineUnavailable(Exception):
    """The engine could not be reached or failed; the caller should see a 503."""


class Engine(Protocol):
    """What an engine must offer; payloads and results are OpenAI-shaped dicts."""

    name: str
    context_length: int

    async def start(self) -> None:
        """Load the model or connect to the upstream."""

    async def stop(self) -> None:
        """Release the model or connection."""

    def is_ready(self) -> bool:
        """True once requests can be served."""

    async def generate(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one non-streaming request and return the OpenAI response body."""

    def stream(self, kind: Kind, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks, the last carrying `usage`."""
