"""What every stage shares: the per-request context, the Stage protocol, and the tasks that outlive a request.

The context is `Call` (services/gateway/call.py), exported here as `RequestContext`: it is made once admission
reserved the request's bounds, and every later stage reads and writes it. Nothing else is allocated per request
for the pipeline itself: the stages are built once, when the app starts, and hold only their collaborators.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from services.gateway.call import Call as RequestContext

__all__ = ["Answer", "Background", "Completed", "NoPost", "RequestContext", "Stage", "Streaming", "has_post"]


@dataclass
class Completed:
    """A finished answer to send as-is."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Streaming:
    """An SSE answer: headers now, chunks as they come."""

    chunks: AsyncIterator[bytes]
    headers: dict[str, str]


Answer = Completed | Streaming


class Stage(Protocol):
    """One step of the way in (after admission): `pre` runs in pipeline order and may answer the request (a cache
    hit, the relayed answer), which ends the way in; then `post` runs, in reverse order, for each stage whose `pre`
    ran, with that answer. A refusal is an APIError raised from `pre`; the forwarder settles it."""

    name: str

    async def pre(self, ctx: RequestContext) -> Answer | None: ...

    def post(self, ctx: RequestContext, answer: Answer) -> None: ...


class NoPost:
    """For stages with nothing to do on the way out: the forwarder skips their `post` (no call per request)."""

    def post(self, ctx: RequestContext, answer: Answer) -> None:
        pass


def has_post(stage: Stage) -> bool:
    """Whether a stage does something in `post` (it does not inherit NoPost's)."""
    return getattr(type(stage), "post", None) is not NoPost.post


class Background:
    """Work that finishes after the answer is sent (settlement, cache writes), held until done: asyncio keeps
    only weak references to tasks, and shutdown waits for these."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task[Any]] = set()

    def track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    def run(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)  # (track's body, inlined: this runs once per answered request)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def drain(self) -> None:
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
