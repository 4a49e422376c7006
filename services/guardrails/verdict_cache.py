"""Findings of texts already judged, so a chat history resent with every turn is read once.

The gateway sends every message of every request, and a conversation resends its whole history each
turn: without a memory, turn N costs N messages. Input and content detectors are pure functions of
(text, mode, policy), so their findings can be reused. Keys hold a digest, not the text; entries expire
after `ttl_s` so a newly promoted injection model judges old texts again within a minute; checks that
hit an error or a timeout are never stored (the next call tries again).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from services.guardrails.detectors.base import Finding

Key = tuple[str, str, bytes]


class VerdictCache:
    """A bounded, thread-safe LRU of (policy, mode, text digest) -> findings, with a time to live."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._entries: OrderedDict[Key, tuple[float, list[Finding]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(policy_fingerprint: str, mode: str, text: str) -> Key:
        """The lookup key; the text itself is not kept."""
        return policy_fingerprint, mode, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, key: Key) -> list[Finding] | None:
        """Stored findings, or None when absent or expired."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry[0] > self.ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Key, findings: list[Finding]) -> None:
        """Remember the findings, dropping the least recently used entry when full."""
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), findings)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
