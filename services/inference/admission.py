"""Admission control: a bounded number of running generations and a bounded, time-budgeted wait queue.

A request is either served promptly or refused at once with 429 and Retry-After: an overloaded CPU engine must
say "later" quickly rather than let every caller's latency grow with the queue. Three refusals, in order:

- queue_full: every slot is busy and `max_queued` requests already wait;
- wait_budget: the wait this request would face (estimated from the measured service time of the running and
  queued requests) is longer than its budget, `wait_factor` x its own expected service time (at least
  `min_wait_s`, at most `queue_timeout_s`): refused on arrival, so it neither waits nor adds to the queue;
- wait_timeout: it waited its whole budget without getting a slot (the estimate was wrong).

A request's expected service time is its cost (the tokens it may generate) times the measured seconds per cost
unit (a moving average over finished requests). Until one request has finished nothing is estimated and the
budget is `queue_timeout_s`, the plain bounded queue. The clock is injectable so the logic is testable without
sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


class Overloaded(Exception):
    """No slot now and no room (or time) to wait; `retry_after_s` is a hint for the caller."""

    def __init__(self, reason: str, retry_after_s: int, cause: str = "queue_full") -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.cause = cause  # queue_full | wait_budget | wait_timeout


@dataclass
class _Job:
    cost: float
    started: float


@dataclass
class _Waiter:
    cost: float
    future: asyncio.Future[_Job]


class AdmissionController:
    """`max_running` slots with a FIFO queue in front of them whose wait is bounded by the service time."""

    def __init__(
        self,
        max_running: int,
        max_queued: int,
        queue_timeout_s: float,
        *,
        wait_factor: float = 0.5,
        min_wait_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.wait_factor = wait_factor  # 0: no budget from the service time, only queue_timeout_s
        self.min_wait_s = min_wait_s
        self.clock = clock
        self.seconds_per_cost: float | None = None  # moving average over finished requests; None until one did
        self._jobs: list[_Job] = []
        self._waiters: deque[_Waiter] = deque()

    @property
    def running(self) -> int:
        return len(self._jobs)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def observe(self, cost: float, seconds: float) -> None:
        """A request of `cost` held its slot `seconds`: update the service-time estimate."""
        per = seconds / max(cost, 1e-9)
        self.seconds_per_cost = per if self.seconds_per_cost is None else 0.8 * self.seconds_per_cost + 0.2 * per

    def service_s(self, cost: float) -> float | None:
        """Expected slot time of a request of `cost` (None before any request finished)."""
        return None if self.seconds_per_cost is None else cost * self.seconds_per_cost

    def wait_budget_s(self, cost: float) -> float:
        """Longest a request of `cost` may wait for a slot."""
        service = self.service_s(cost)
        if service is None or self.wait_factor <= 0:
            return self.queue_timeout_s
        return min(self.queue_timeout_s, max(self.min_wait_s, self.wait_factor * service))

    def expected_wait_s(self) -> float:
        """When a request arriving now would get a slot: the running jobs' remaining times, then each queued
        request ahead of it taking the first slot that frees (0 when nothing can be estimated yet)."""
        per = self.seconds_per_cost
        if per is None:
            return 0.0
        now = self.clock()
        frees = [max(0.0, j.cost * per - (now - j.started)) for j in self._jobs]
        frees += [0.0] * max(0, self.max_running - len(frees))
        heapq.heapify(frees)
        for waiter in self._waiters:
            heapq.heappush(frees, heapq.heappop(frees) + waiter.cost * per)
        return frees[0]

    def retry_after_s(self) -> int:
        """Rough time until a request arriving now would start, in whole seconds (at least 1)."""
        return max(1, math.ceil(self.expected_wait_s()))

    def _start(self, cost: float) -> _Job:
        job = _Job(cost, self.clock())
        self._jobs.append(job)
        return job

    def _finish(self, job: _Job) -> None:
        """Free the job's slot: hand it straight to the first waiter, so a newcomer cannot jump the queue."""
        self._jobs.remove(job)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(self._start(waiter.cost))
                return

    def _drop(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:  # _finish may have skipped (and dropped) it already
            self._waiters.remove(waiter)

    async def _acquire(self, cost: float) -> _Job:
        if len(self._jobs) < self.max_running and not self._waiters:
            return self._start(cost)  # synchronously, so concurrent arrivals see the true count at once
        if len(self._waiters) >= self.max_queued:
            raise Overloaded(
                f"server busy: {self.running} generations running and {self.queued} queued "
                f"(limits {self.max_running} and {self.max_queued})",
                self.retry_after_s(),
            )
        budget, expected = self.wait_budget_s(cost), self.expected_wait_s()
        if expected > budget:
            raise Overloaded(
                f"server busy: a slot frees in about {expected:.1f}s, longer than this request's wait budget "
                f"of {budget:.1f}s ({self.running} running, {self.queued} queued)",
                max(1, math.ceil(expected)),
                "wait_budget",
            )
        waiter = _Waiter(cost, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(budget):
                return await waiter.future
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                return waiter.future.result()  # handed a slot right at the deadline: use it
            self._drop(waiter)
            raise Overloaded(
                f"server busy: waited {budget:.1f}s for a generation slot", self.retry_after_s(), "wait_timeout"
            ) from None
        except BaseException:  # cancelled (the client went away): give back whatever it holds
            if waiter.future.done() and not waiter.future.cancelled():
                self._finish(waiter.future.result())
            else:
                self._drop(waiter)
            raise

    @asynccontextmanager
    async def slot(self, cost: float = 1.0) -> AsyncIterator[None]:
        """Hold one generation slot for the duration of the block; `cost` is what it may generate (tokens)."""
        job = await self._acquire(cost)
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok:  # a failed request says nothing about how long a generation takes
                self.observe(job.cost, self.clock() - job.started)
            self._finish(job)
