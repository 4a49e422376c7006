"""A small TTL cache for the hot read path (alias resolution, catalogue) with explicit invalidation."""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any


class TTLCache:
    """Entries expire after `ttl_s`; a TTL of 0 disables caching entirely (used by the benchmark's baseline)."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._data: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> Any | None:
        """The cached value, or None when absent or expired."""
        if self.ttl_s <= 0:
            return None
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            self._data.pop(key, None)
            return None
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store a value; the oldest entry goes when the cache is full."""
        if self.ttl_s <= 0:
            return
        if len(self._data) >= self.max_entries:
            self._data.pop(next(iter(self._data)))
        self._data[key] = (time.monotonic() + self.ttl_s, value)

    def invalidate(self, prefix: tuple[Any, ...] = ()) -> None:
        """Drop every key that is a tuple starting with `prefix` (all keys when empty)."""
        if not prefix:
            self._data.clear()
            return
        n = len(prefix)
        for key in [k for k in self._data if isinstance(k, tuple) and k[:n] == prefix]:
            self._data.pop(key, None)
