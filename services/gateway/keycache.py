"""An in-process cache of key records, kept coherent across replicas by Redis pub/sub.

Looking a key up in Redis is a full round trip on every request; the record changes only when an admin
updates or revokes it. Each write publishes the record's digest and every replica drops its copy, so a
revocation takes effect everywhere within the pub/sub delivery time (milliseconds). The TTL is only a safety
net for messages lost while a replica's subscription was down; on every (re)subscription the cache is emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops_common.feed_cache import FeedCache

if TYPE_CHECKING:
    from services.gateway.keys import KeyRecord  # noqa: F401 - named in the base class below (keys imports us)

log = logging.getLogger("gateway.keycache")


class KeyCache(FeedCache["KeyRecord"]):
    """Digest -> KeyRecord with a TTL and an LRU bound. `ttl_s=0` turns caching off."""


class KeyChangeListener:
    """Background task: subscribe to the change channel and forget what it announces."""

    def __init__(self, redis: Redis, channel: str, cache: KeyCache) -> None:
        self.redis = redis
        self.channel = channel
        self.cache = cache
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        """Start listening; returns once subscribed (or after a bounded wait if Redis is down)."""
        self._task = asyncio.create_task(self._run(), name="key-change-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 5.0)

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.cache.clear()  # changes made while we were not listening are unknown
                self.cache.live = True
                self.subscribed.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        data = data.decode()
                    if isinstance(data, str):
                        self.cache.forget(data)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self.cache.live = False
                self.cache.clear()  # no feed, no cache: until resubscribed, lookups go to Redis
                log.warning("key change feed interrupted; retrying", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.cache.live = False  # also on cancellation: a stopped listener must not leave a cache behind
                self.cache.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
