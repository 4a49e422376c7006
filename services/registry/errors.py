"""The service layer's one exception type; the app renders it in the platform's error envelope."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """A 4xx/5xx outcome with a stable code, raised by service classes (no HTTP types in there)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def not_found(what: str) -> RegistryError:
    """404 for an unknown object."""
    return RegistryError(404, "not_found", f"{what} does not exist")
