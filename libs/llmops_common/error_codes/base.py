"""The shape of one catalogue entry (its own module so the area files can import it without a cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any

from llmops_common.errors import APIError, error_type


@dataclass(frozen=True)
class ErrorCode:
    """One error code: `status` is the HTTP status (a tuple when it has several). None when the code has no status
    of its own: a per-item result (a batch line, an ingested document, a job), a trace event's `error_code`, or a
    status passed through from a deployment."""

    code: str
    status: int | tuple[int, ...] | None
    meaning: str  # one line: what happened
    fix: str  # what to do about it
    message: str = ""  # the message, with {placeholders} where the request's own values go

    @property
    def statuses(self) -> tuple[int, ...]:
        """The status as a tuple (empty for a per-item result code)."""
        if self.status is None:
            return ()
        return self.status if isinstance(self.status, tuple) else (self.status,)

    @property
    def types(self) -> tuple[str, ...]:
        """OpenAI's `type` values the envelope carries for this code (derived from the status)."""
        return tuple(dict.fromkeys(error_type(s) for s in self.statuses))

    @property
    def placeholders(self) -> list[str]:
        """The names in `message` that a raise site fills in."""
        return [name for _, name, _, _ in Formatter().parse(self.message) if name]

    def api_error(self, status: int | None = None, *, param: str | None = None, **values: Any) -> APIError:
        """An APIError with this code and the catalogued message (`values` fill its placeholders)."""
        if status is None:
            if len(self.statuses) != 1:
                raise ValueError(f"{self.code} has statuses {self.statuses}: pass the one that applies")
            status = self.statuses[0]
        elif status not in self.statuses:
            raise ValueError(f"{self.code} is catalogued with {self.statuses}, not {status}")
        return APIError(status, self.code, self.message.format(**values), param=param)
