"""The engine interface the serving layer talks to, and the errors engines raise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from services.inference.registry_source import VersionSpec
    from services.inference.settings import InferenceSettings

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
    """What an engine must offer; payloads and results are OpenAI-shaped dicts.

    Every method is required (no `getattr` probing in the serving code): an engine with nothing to do for one
    of them implements it as a no-op. Register a new engine in `engines/registry.py` (docs/extending.md).
    """

    name: str
    context_length: int

    async def start(self) -> None:
        """Load the model or connect to the upstream."""

    async def stop(self) -> None:
        """Release the model or connection."""

    def is_ready(self) -> bool:
        """True once requests can be served."""

    async def refresh_ready(self) -> bool:
        """Check again whether requests can be served (readiness probes call it while not ready)."""

    def restore_priority(self) -> None:
        """Called once the version is warm, before it takes traffic (a llama.cpp child loads at low priority)."""

    async def generate(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one non-streaming request and return the OpenAI response body."""

    def stream(self, kind: Kind, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI chunks, the last carrying `usage`."""


class EngineFactory(Protocol):
    """Builds an engine for a registry version (`spec`), or for the one model the settings describe (None)."""

    def __call__(self, settings: InferenceSettings, spec: VersionSpec | None) -> Engine:
        """A new, not yet started engine."""
        ...
