"""Admission control: a bounded number (and token weight) of running generations and a bounded, time-budgeted queue.

A request is either served promptly or refused at once with 429 and Retry-After: an overloaded CPU engine must
say "later" quickly rather than let every caller's latency grow with the queue.

A request runs when fewer than `max_running` run and, with a token budget (`max_tokens`, 0: none), when its cost
(the tokens it may cost the engine: its prompt and what it may generate, see serving.py) fits beside the running
requests' costs. Why: a count alone let a long RAG prompt (1,300 tokens read in 256-token steps) run beside a short
chat, and each step stalled the chat's next token. A request costing more than the whole budget runs alone: it
waits at the head of the queue until nothing runs (nobody jumps it meanwhile), so nothing that fits the model's
context is ever refused for its size alone (what cannot fit the context gets a 400 before admission). Three
refusals, in order:

- queue_full: no room to run now and `max_queued` requests already wait;
- wait_budget: the wait this request would face (estimated from the measured service time of the running and
  queued requests) is longer than its budget, `wait_factor` x its own expected service time (at least
  `min_wait_s`, at most `queue_timeout_s`): refused on arrival, so it neither waits nor adds to the queue;
- wait_timeout: it waited its whole budget without getting a slot (the estimate was wrong).

A request's expected service time is its cost times the measured seconds per cost unit (a moving average over
finished requests); the wait ahead of a newcomer is a replay of the queue in order against the running requests'
remaining times, with the same count and token rules. Until one request has finished nothing is estimated and the
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
    """`max_running` slots (and `max_tokens` of cost) with a FIFO queue in front whose wait is bounded in time."""

    def __init__(
        self,
        max_running: int,
        max_queued: int,
        queue_timeout_s: float,
        *,
        max_tokens: float = 0,
        wait_factor: float = 0.5,
        min_wait_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_tokens = max_tokens  # 0: count only
        self.queue_timeout_s = queue_timeout_s
        self.wait_factor = wait_factor  # 0: no budget from the service time, only queue_timeout_s
        self.min_wait_s = min_wait_s
        self.clock = clock
        self.seconds_per_cost: float | None = None  # moving average over finished requests; None until one did
        # Called after every change of what runs or waits (the serving layer's gauges: a request that starts
        # waiting shows in the queue gauges while it waits, not only once it runs).
        self.on_change: Callable[[], None] | None = None
        self._jobs: list[_Job] = []
        self._waiters: deque[_Waiter] = deque()

    @property
    def running(self) -> int:
        return len(self._jobs)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def running_tokens(self) -> float:
        """The cost (tokens) of the requests running now."""
        return sum(j.cost for j in self._jobs)

    @property
    def queued_tokens(self) -> float:
        """The cost (tokens) of the requests waiting now."""
        return sum(w.cost for w in self._waiters)

    def _fits(self, cost: float, running: int, tokens: float) -> bool:
        """May a request of `cost` start beside `running` requests costing `tokens`? Alone it always may."""
        if running == 0:
            return True
        if running >= self.max_running:
            return False
        return self.max_tokens <= 0 or tokens + cost <= self.max_tokens

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

    def expected_wait_s(self, cost: float = 1.0) -> float:
        """When a request of `cost` arriving now would start: replay the queue in order (each waiter starts once
        enough running requests finished for it to fit, never before the one ahead of it), then the newcomer
        (0 when nothing can be estimated yet)."""
        per = self.seconds_per_cost
        if per is None:
            return 0.0
        now = self.clock()
        ends = [(max(0.0, j.cost * per - (now - j.started)), j.cost) for j in self._jobs]
        heapq.heapify(ends)
        running, tokens, at = len(ends), sum(c for _, c in ends), 0.0
        for c in [*(w.cost for w in self._waiters), cost]:
            while ends and (ends[0][0] <= at or not self._fits(c, running, tokens)):
                end, freed = heapq.heappop(ends)  # finished by `at`, or the next to finish if `c` must wait
                at, running, tokens = max(at, end), running - 1, tokens - freed
            heapq.heappush(ends, (at + c * per, c))
            running, tokens = running + 1, tokens + c
        return at

    def retry_after_s(self, cost: float = 1.0) -> int:
        """Rough time until a request of `cost` arriving now would start, in whole seconds (at least 1)."""
        return max(1, math.ceil(self.expected_wait_s(cost)))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _start(self, cost: float) -> _Job:
        job = _Job(cost, self.clock())
        self._jobs.append(job)
        self._changed()
        return job

    def _finish(self, job: _Job) -> None:
        self._jobs.remove(job)
        self._dispatch()
        self._changed()

    def _dispatch(self) -> None:
        """Start waiters from the head of the queue while they fit: freed room goes to the first in line, so a
        newcomer cannot jump the queue (nor a small request a large one ahead of it, which would starve)."""
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.future.done():  # gone (cancelled) but not yet dropped
                self._waiters.popleft()
                continue
            if not self._fits(waiter.cost, len(self._jobs), self.running_tokens):
                return
            self._waiters.popleft()
            waiter.future.set_result(self._start(waiter.cost))

    def _drop(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:  # _dispatch may have skipped (and dropped) it already
            self._waiters.remove(waiter)
            self._dispatch()  # it may have been the head that did not fit: the ones behind it may
            self._changed()

    async def _acquire(self, cost: float) -> _Job:
        if not self._waiters and self._fits(cost, len(self._jobs), self.running_tokens):
            return self._start(cost)  # synchronously, so concurrent arrivals see the true count at once
        if len(self._waiters) >= self.max_queued:
            raise Overloaded(
                f"server busy: {self.running} generations running ({self.running_tokens:.0f} tokens) and "
                f"{self.queued} queued (limits {self.max_running} running, {self.max_tokens:.0f} tokens, "
                f"{self.max_queued} queued)",
                self.retry_after_s(cost),
            )
        budget, expected = self.wait_budget_s(cost), self.expected_wait_s(cost)
        if expected > budget:
            raise Overloaded(
                f"server busy: a slot frees in about {expected:.1f}s, longer than this request's wait budget "
                f"of {budget:.1f}s ({self.running} running, {self.queued} queued)",
                max(1, math.ceil(expected)),
                "wait_budget",
            )
        waiter = _Waiter(cost, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._changed()
        try:
            async with asyncio.timeout(budget):
                return await waiter.future
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                return waiter.future.result()  # handed a slot right at the deadline: use it
            self._drop(waiter)
            raise Overloaded(
                f"server busy: waited {budget:.1f}s for a generation slot", self.retry_after_s(cost), "wait_timeout"
            ) from None
        except BaseException:  # cancelled (the client went away): give back whatever it holds
            if waiter.future.done() and not waiter.future.cancelled():
                self._finish(waiter.future.result())
            else:
                self._drop(waiter)
            raise

    @asynccontextmanager
    async def slot(self, cost: float = 1.0) -> AsyncIterator[None]:
        """Hold one generation slot for the duration of the block; `cost` is what it may cost the engine (tokens)."""
        job = await self._acquire(cost)
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok:  # a failed request says nothing about how long a generation takes
                self.observe(job.cost, self.clock() - job.started)
            self._finish(job)
