"""Reading the trace-event stream in tests.

The services write trace events from a background task (libs/llmops_common/trace_events.py), so an event
lands in Redis shortly *after* the response that caused it. Reading the stream once right after the response
races that writer. `wait_for_events` instead blocks on XREAD until the events it needs have arrived: it
returns as soon as they are there and fails with what it saw after `timeout_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

Events = list[dict[str, Any]]


def wait_for_events(redis_url: str, stream: str, until: Callable[[Events], bool], timeout_s: float = 15.0) -> Events:
    """Every event of `stream` read so far, once `until(events)` holds."""
    client = redis.Redis.from_url(redis_url)
    events: Events = []
    last_id = "0-0"
    deadline = time.monotonic() + timeout_s
    try:
        while not until(events):
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                seen = repr(events)[:2000]
                raise AssertionError(f"trace events in {stream!r} never met the condition; saw {len(events)}: {seen}")
            # BLOCK returns at once when entries newer than last_id exist, else waits for the next XADD.
            for _, entries in client.xread({stream: last_id}, count=1000, block=remaining_ms) or []:
                for entry_id, fields in entries:
                    events.append(orjson.loads(fields[b"event"]))
                    last_id = entry_id
        return events
    finally:
        client.close()


def wait_for_event(redis_url: str, stream: str, timeout_s: float = 15.0, **match: Any) -> dict[str, Any]:
    """The first event of `stream` whose fields equal `match`."""

    def matches(event: dict[str, Any]) -> bool:
        return all(event.get(k) == v for k, v in match.items())

    events = wait_for_events(redis_url, stream, lambda seen: any(matches(e) for e in seen), timeout_s)
    return next(e for e in events if matches(e))
