"""JSON logs with the request id, so a line can be joined to its request and trace."""

from __future__ import annotations

import json
import logging
import sys
import time

from llmops_common.request_id import current_request_id
from llmops_common.telemetry import current_trace_id

_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as top-level keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = current_request_id()
        if rid:
            entry["request_id"] = rid
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    """Install one stderr handler on the root logger (idempotent across app factories)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_llmops", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._llmops = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter(service) if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
