"""Admission control: a bounded number of running generations and a bounded wait queue.

Beyond the queue, or after waiting too long, a request is refused with 429 and Retry-After:
an overloaded CPU engine must say "later" quickly rather than hang every caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Overloaded(Exception):
    """No slot now and no room (or time) to wait; `retry_after_s` is a hint for the caller."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AdmissionController:
    """A semaphore with a visible, bounded queue in front of it."""

    def __init__(self, max_running: int, max_queued: int, queue_timeout_s: float) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self._slots = asyncio.Semaphore(max_running)
        self.running = 0
        self.queued = 0
        self._avg_duration_s = 1.0  # moving average, only used for the Retry-After hint

    def retry_after_s(self) -> int:
        """Rough time until a queued request would start, in whole seconds (at least 1)."""
        waves = (self.queued + 1) / self.max_running
        return max(1, math.ceil(waves * self._avg_duration_s))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one generation slot for the duration of the block."""
        if self._slots.locked() and self.queued >= self.max_queued:
            raise Overloaded(
                f"server busy: {self.running} generations running and {self.queued} queued "
                f"(limits {self.max_running} and {self.max_queued})",
                self.retry_after_s(),
            )
        if self._slots.locked():
            self.queued += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.queue_timeout_s)
            except TimeoutError:
                raise Overloaded(
                    f"server busy: waited {self.queue_timeout_s:.0f}s for a generation slot",
                    self.retry_after_s(),
                ) from None
            finally:
                self.queued -= 1
        else:
            # Free slot: take it synchronously, so concurrent arrivals see the true count at once.
            await self._slots.acquire()
        self.running += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
            self._avg_duration_s = 0.8 * self._avg_duration_s + 0.2 * (time.perf_counter() - started)
