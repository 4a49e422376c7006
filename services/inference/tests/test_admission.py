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


# The token budget: what runs together is bounded by its cost (prompt + output tokens), not only by its count.


def tokened(clock: FakeClock, max_tokens: float = 400, **kw: float) -> AdmissionController:
    return AdmissionController(
        max_running=int(kw.pop("max_running", 2)), max_queued=int(kw.pop("max_queued", 8)), queue_timeout_s=30,
        max_tokens=max_tokens, wait_factor=kw.pop("wait_factor", 0), clock=clock,
    )  # fmt: skip


async def test_a_request_that_does_not_fit_the_token_budget_waits_though_a_slot_is_free() -> None:
    admission = tokened(FakeClock())
    rag = Held(admission, 300)  # a long prompt
    await settle()
    chat = Held(admission, 150)  # 300 + 150 > 400: it must not run beside the RAG answer
    await settle()
    assert rag.admitted.is_set() and not chat.admitted.is_set()
    assert admission.running == 1 and admission.queued == 1
    assert admission.running_tokens == 300 and admission.queued_tokens == 150
    small = Held(admission, 50)  # it would fit, but it does not jump the chat ahead of it
    await settle()
    assert not small.admitted.is_set() and admission.queued == 2
    rag.release.set()
    await settle()
    assert chat.admitted.is_set() and small.admitted.is_set()  # both fit now: 200 of 400
    assert admission.running == 2 and admission.running_tokens == 200 and admission.queued_tokens == 0
    for held in (chat, small):
        held.release.set()
    await asyncio.gather(rag.task, chat.task, small.task)
    assert admission.running == 0 and admission.running_tokens == 0


async def test_requests_within_the_budget_share_the_engine_up_to_max_running() -> None:
    admission = tokened(FakeClock())
    chats = [Held(admission, 64) for _ in range(3)]
    await settle()
    assert [c.admitted.is_set() for c in chats] == [True, True, False]  # the count still applies
    for chat in chats:
        chat.release.set()
    await asyncio.gather(*(c.task for c in chats))


async def test_a_request_over_the_whole_budget_runs_alone_and_is_not_starved() -> None:
    admission = tokened(FakeClock())
    chat = Held(admission, 64)
    await settle()
    huge = Held(admission, 1000)  # more than the whole budget: it waits until nothing runs
    await settle()
    assert not huge.admitted.is_set() and admission.queued == 1
    late = Held(admission, 64)  # fits beside the running chat, but the huge one is first in line
    await settle()
    assert not late.admitted.is_set()
    chat.release.set()
    await settle()
    assert huge.admitted.is_set() and not late.admitted.is_set() and admission.running == 1
    huge.release.set()
    await settle()
    assert late.admitted.is_set()
    late.release.set()
    await asyncio.gather(chat.task, huge.task, late.task)
    alone = tokened(FakeClock())
    async with alone.slot(1000):  # nothing runs: admitted at once, never refused for its size
        assert alone.running == 1 and alone.running_tokens == 1000


async def test_a_head_that_gives_up_lets_the_ones_behind_it_run() -> None:
    admission = tokened(FakeClock())
    rag = Held(admission, 300)
    await settle()
    big, chat = Held(admission, 200), Held(admission, 50)  # the big one does not fit beside the RAG answer
    await settle()
    assert admission.queued == 2
    big.task.cancel()  # its client went away: the chat behind it fits beside the RAG answer
    await settle()
    assert chat.admitted.is_set() and admission.queued == 0 and admission.running_tokens == 350
    rag.release.set()
    chat.release.set()
    await asyncio.gather(rag.task, chat.task)
    assert admission.running == 0 and admission.queued == 0


async def test_the_wait_estimate_replays_the_token_budget() -> None:
    clock = FakeClock()
    admission = tokened(clock, wait_factor=1.0)
    admission.observe(100, 1.0)  # 0.01 s per token of cost
    rag = Held(admission, 300)  # runs 3 s
    await settle()
    clock.now = 1.0
    assert admission.expected_wait_s(50) == 0  # fits beside it
    assert admission.expected_wait_s(150) == pytest.approx(2.0)  # must wait for the RAG answer to finish
    # A chat that does not fit would wait 2 s, over its own budget (1.5 s): refused at once, with that wait.
    with pytest.raises(Overloaded) as refused:
        async with admission.slot(150):
            pass
    assert refused.value.cause == "wait_budget" and refused.value.retry_after_s == 2 and admission.queued == 0
    huge = Held(admission, 1000)  # 10 s budget covers 2 s: it queues, and everything after it waits for it
    await settle()
    assert admission.queued == 1
    assert admission.expected_wait_s(50) == pytest.approx(12.0)  # the RAG answer's 2 s, then the huge one's 10 s
    assert admission.retry_after_s(50) == 12
    rag.release.set()
    huge.release.set()
    await asyncio.gather(rag.task, huge.task)


async def test_without_a_token_budget_only_the_count_applies() -> None:
    admission = tokened(FakeClock(), max_tokens=0)
    held = [Held(admission, 10_000), Held(admission, 10_000)]
    await settle()
    assert all(h.admitted.is_set() for h in held)
    for h in held:
        h.release.set()
    await asyncio.gather(*(h.task for h in held))
