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
