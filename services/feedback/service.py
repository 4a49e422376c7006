"""Feedback, queries and the labeling queue over the store, with the caller's team applied."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from services.feedback.auth import Principal
from services.feedback.metrics import FeedbackMetrics
from services.feedback.schemas import FeedbackIn, LabelIn
from services.feedback.sinks import FeedbackSink
from services.feedback.store import labeling, queries
from services.feedback.store.queries import NotFound, RequestFilter
from services.feedback.store.store import Store, StoreUnavailable

log = logging.getLogger("llmops.feedback.service")


class FeedbackService:
    """Plain class behind the routes; every method takes the caller and enforces team scoping."""

    def __init__(
        self,
        store: Store,
        metrics: FeedbackMetrics,
        *,
        lease_s: float,
        wait_for_request_s: float = 1.5,
        sink: FeedbackSink | None = None,
    ) -> None:
        self.store, self.metrics, self.lease_s = store, metrics, lease_s
        self.wait_for_request_s = wait_for_request_s
        self.sink = sink

    async def submit(self, who: Principal, body: FeedbackIn, team: str | None) -> dict[str, Any]:
        """Store feedback on `team`'s request (the caller's; None: the admin's pick of the only team with the id);
        waits briefly for a request the stream has not delivered yet."""
        data = body.model_dump(exclude={"team"}) | {"score": body.score()}
        deadline = time.monotonic() + self.wait_for_request_s
        while True:
            try:
                row = await self.store.write(queries.add_feedback, team, who.key_id, data, time.time())
                break
            except NotFound:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)  # the event may still be in the stream (lag is well under a second)
        self.metrics.feedback.labels("thumbs" if body.thumbs else "rating").inc()
        if self.sink is not None:
            await self.sink.feedback(row)
        return row

    async def list_requests(self, who: Principal, f: RequestFilter) -> list[dict[str, Any]]:
        """Requests visible to the caller."""
        return await self.store.read(queries.list_requests, self._scoped(who, f))

    async def list_feedback(self, who: Principal, f: RequestFilter) -> list[dict[str, Any]]:
        """Feedback visible to the caller."""
        return await self.store.read(queries.list_feedback, self._scoped(who, f))

    async def get_request(self, request_id: str, team: str | None) -> dict[str, Any]:
        """One request (with its feedback) of `team` (None: the only team that used the id)."""
        return await self.store.read(queries.get_request, request_id, team)

    async def next_item(self, who: Principal) -> dict[str, Any] | None:
        """Reserve the next labeling item of the caller's team (admin: any team)."""
        item = await self.store.write(labeling.next_item, who.team, who.key_id, time.time(), self.lease_s)
        await self.refresh_queue_gauge()
        return item

    async def label(self, who: Principal, item_id: int, body: LabelIn) -> dict[str, Any]:
        """Label an item."""
        item = await self.store.write(
            labeling.label_item, item_id, who.team, body.model_dump(), who.key_id, time.time()
        )
        await self.refresh_queue_gauge()
        return item

    async def skip(self, who: Principal, item_id: int) -> dict[str, Any]:
        """Skip an item."""
        item = await self.store.write(labeling.skip_item, item_id, who.team, who.key_id)
        await self.refresh_queue_gauge()
        return item

    async def queue_counts(self, who: Principal) -> dict[str, int]:
        """Items per status for the caller's team."""
        return await self.store.read(labeling.queue_counts, who.team)

    async def refresh_queue_gauge(self) -> None:
        """Publish the all-teams queue sizes."""
        counts = await self.store.read(labeling.queue_counts, None)
        for status in ("pending", "taken", "labeled", "skipped"):
            self.metrics.label_queue.labels(status).set(counts.get(status, 0))

    async def refresh_gauges_forever(self, interval_s: float) -> None:
        """Keep the queue-size gauges current even when nobody labels."""
        while True:
            try:
                await self.refresh_queue_gauge()
            except StoreUnavailable as exc:
                log.warning("queue gauge not refreshed", extra={"error": str(exc)})
            await asyncio.sleep(interval_s)

    @staticmethod
    def _scoped(who: Principal, f: RequestFilter) -> RequestFilter:
        if who.is_admin:
            return f
        return RequestFilter(**(f.__dict__ | {"team": who.team}))
