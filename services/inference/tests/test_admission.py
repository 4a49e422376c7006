"""Admission control: bounded running + bounded queue, 429 beyond, never a hang."""

from __future__ import annotations

import asyncio

import pytest

from services.inference.admission import AdmissionController, Overloaded


async def test_admits_running_plus_queued_and_refuses_the_rest() -> None:
    admission = AdmissionController(max_running=2, max_queued=3, queue_timeout_s=5)
    release = asyncio.Event()
    started = 0

    async def job() -> str:
        nonlocal started
        async with admission.slot():
            started += 1
            await release.wait()
        return "done"

    tasks = [asyncio.create_task(job()) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert admission.running == 2 and admission.queued == 3
    refused = [t for t in tasks if t.done()]
    assert len(refused) == 5
    for task in refused:
        exc = task.exception()
        assert isinstance(exc, Overloaded) and exc.retry_after_s >= 1 and "2 generations running" in exc.reason
    release.set()
    results = await asyncio.gather(*(t for t in tasks if t not in refused))
    assert results == ["done"] * 5 and started == 5
    assert admission.running == 0 and admission.queued == 0


async def test_queue_wait_is_bounded_in_time() -> None:
    admission = AdmissionController(max_running=1, max_queued=5, queue_timeout_s=0.1)
    async with admission.slot():
        with pytest.raises(Overloaded, match="waited"):
            async with admission.slot():
                pass
    assert admission.queued == 0
    async with admission.slot():  # the slot was released properly
        assert admission.running == 1


# The wait budget, with a fake clock: the decisions depend on the clock and the measured service time only.


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let every ready task run until it blocks (no time passes: the clock is fake)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Held:
    """A request holding (or waiting for) a slot until released."""

    def __init__(self, admission: AdmissionController, cost: float) -> None:
        self.admission, self.cost = admission, cost
        self.release = asyncio.Event()
        self.admitted = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.admission.slot(self.cost):
            self.admitted.set()
            await self.release.wait()


def budgeted(clock: FakeClock, **kw: float) -> AdmissionController:
    admission = AdmissionController(
        max_running=int(kw.pop("max_running", 2)), max_queued=int(kw.pop("max_queued", 8)), queue_timeout_s=30,
        wait_factor=kw.pop("wait_factor", 1.0), min_wait_s=kw.pop("min_wait_s", 0.5), clock=clock,
    )  # fmt: skip
    admission.observe(32, 1.6)  # one finished request: 0.05 s per token
    return admission


async def test_the_budget_is_the_requests_own_service_time_bounded_both_ways() -> None:
    admission = budgeted(FakeClock())
    assert admission.service_s(32) == pytest.approx(1.6)
    assert admission.wait_budget_s(32) == pytest.approx(1.6)
    assert admission.wait_budget_s(2) == 0.5  # the floor: a tiny request may still wait a moment
    assert admission.wait_budget_s(10_000) == 30  # the cap: queue_timeout_s
    fresh = AdmissionController(2, 8, 30, clock=FakeClock())
    assert fresh.service_s(32) is None and fresh.wait_budget_s(32) == 30  # nothing measured: the plain queue
    assert fresh.expected_wait_s() == 0.0


async def test_a_request_that_would_wait_longer_than_its_budget_is_refused_at_once() -> None:
    clock = FakeClock()
    admission = budgeted(clock)
    running = [Held(admission, 32), Held(admission, 32)]
    await settle()
    assert admission.running == 2
    clock.now = 0.4  # both slots free in 1.2 s
    assert admission.expected_wait_s() == pytest.approx(1.2)
    first, second = Held(admission, 32), Held(admission, 32)  # 1.2 s <= 1.6 s budget: both queue
    await settle()
    assert admission.queued == 2
    assert admission.expected_wait_s() == pytest.approx(2.8)  # after the two ahead of it: 1.2 + 1.6
    with pytest.raises(Overloaded) as refused:
        async with admission.slot(32):
            pass
    assert refused.value.cause == "wait_budget" and refused.value.retry_after_s == 3
    assert "2.8s" in refused.value.reason and admission.queued == 2  # it did not join the queue
    long = Held(admission, 256)  # a long request's budget (12.8 s) covers the same wait: it queues
    short_refused = False
    try:
        async with admission.slot(4):  # a short one (budget 0.5 s) is not worth a 2.8 s wait
            pass
    except Overloaded:
        short_refused = True
    await settle()
    assert short_refused and admission.queued == 3
    # Slots are handed over in arrival order as requests finish; the clock measures the service time.
    clock.now = 1.6
    running[0].release.set()
    await settle()
    assert first.admitted.is_set() and not second.admitted.is_set()
    assert admission.seconds_per_cost == pytest.approx(0.05)  # it took exactly the expected time
    for held in (running[1], first, second, long):
        held.release.set()
    await asyncio.gather(*(h.task for h in (*running, first, second, long)))
    assert admission.running == 0 and admission.queued == 0


async def test_the_estimate_follows_the_measured_service_time() -> None:
    clock = FakeClock()
    admission = budgeted(clock)
    for _ in range(20):  # the engine slowed down fourfold (e.g. the CPU is shared): 0.2 s per token
        async with admission.slot(10):
            clock.now += 2.0
    assert admission.seconds_per_cost == pytest.approx(0.2, rel=0.01)
    assert admission.wait_budget_s(32) == pytest.approx(6.4, rel=0.01)
    with pytest.raises(RuntimeError):  # a failed request does not count as a service time
        async with admission.slot(10):
            clock.now += 100
            raise RuntimeError("engine failed")
    assert admission.seconds_per_cost == pytest.approx(0.2, rel=0.01) and admission.running == 0


async def test_one_user_at_a_time_is_never_refused() -> None:
    """`make up` with one learner: each request finds a free slot, however slow the engine is."""
    clock = FakeClock()
    admission = budgeted(clock, max_running=1, max_queued=0, wait_factor=1.0, min_wait_s=0)
    for cost in (1, 256, 32, 1, 2000):
        async with admission.slot(cost):
            clock.now += 50
    assert admission.running == 0


async def test_a_waiter_that_goes_away_leaks_nothing() -> None:
    clock = FakeClock()
    admission = budgeted(clock, max_running=1)
    holder = Held(admission, 32)
    await settle()
    waiter = Held(admission, 32)
    await settle()
    assert admission.queued == 1
    waiter.task.cancel()  # the client disconnected while queued
    await settle()
    assert admission.queued == 0
    handed = Held(admission, 32)
    await settle()
    holder.release.set()  # the slot is handed to `handed`, which is cancelled before it runs
    await asyncio.sleep(0)
    handed.task.cancel()
    await settle()
    assert admission.running == 0 and admission.queued == 0
    async with admission.slot(32):  # the slot came back
        assert admission.running == 1


async def test_without_the_factor_only_the_timeout_bounds_the_wait() -> None:
    clock = FakeClock()
    admission = budgeted(clock, max_running=1, wait_factor=0)
    holder = Held(admission, 32)
    await settle()
    clock.now = 0.1
    queued = [Held(admission, 1) for _ in range(5)]  # 1.5 s + 4 x 0.05 s wait, far over a 1-token budget
    await settle()
    assert admission.queued == 5
    holder.release.set()
    for q in queued:
        q.release.set()
    await asyncio.gather(holder.task, *(q.task for q in queued))
