"""An in-process cache kept coherent by a change feed (the gateway's `<prefix>:keys:changed` pub/sub).

Shared by the gateway's key-record cache and the services' gateway-identity client: entries are keyed by a key's
digest, expire after a TTL (a safety net for messages lost while unsubscribed) and are bounded LRU. Nothing is
stored unless `live` (the feed is subscribed), and an answer fetched before an invalidation is not stored after it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class FeedCache(Generic[V]):
    """Digest -> value with a TTL and an LRU bound. `ttl_s=0` turns caching off."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Bumped on every invalidation: a lookup that started before a change must not store what it read.
        self.generation = 0
        # Only while a listener is subscribed to the change feed may values be kept (else changes would be missed).
        self.live = False

    def get(self, digest: str) -> V | None:
        """The cached value, if fresh."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry[1]

    def put(self, digest: str, value: V, generation: int) -> None:
        """Store a value fetched while the cache was at `generation`."""
        if self.ttl_s <= 0 or not self.live or generation != self.generation:
            return  # caching off, no change feed, or the value changed while it was being fetched
        self._entries[digest] = (time.monotonic() + self.ttl_s, value)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, digest: str) -> None:
        """Drop one value (the feed announced a change)."""
        self.generation += 1
        self._entries.pop(digest, None)

    def clear(self) -> None:
        """Drop everything (the feed was interrupted, so any entry may be stale)."""
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
