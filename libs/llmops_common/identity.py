"""Who is calling: a gateway key resolved by the gateway's `GET /v1/me`, the one client every service uses.

Services other than the gateway (RAG, feedback) accept the caller's gateway key and ask the gateway whose it is.
Asking on every request costs a round trip, so answers (also the 401s) are cached, keyed by the key's SHA-256
digest (the raw key is never a cache key). The cache is only as good as its invalidation: the gateway publishes
the digest of every key it creates, updates or revokes on the Redis channel `<prefix>:keys:changed`, and a
listener here drops that entry, so a revoked key stops working within the pub/sub delivery time (milliseconds),
not at the end of a TTL. While the subscription is down nothing is cached at all (every request asks the
gateway), exactly like the gateway's own key cache; the TTL is only a safety net.

One error code for "the gateway cannot be asked" everywhere: `gateway_unavailable` (503, with retry-after).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops_common.errors import APIError
from llmops_common.feed_cache import FeedCache
from llmops_common.http import AsyncHTTP, HTTPError, Reply
from llmops_common.service_auth import bearer_token
from llmops_common.tasks import cancel_and_wait

log = logging.getLogger("llmops.identity")

GATEWAY_UNAVAILABLE = "gateway_unavailable"


@dataclass(frozen=True)
class Identity:
    """A gateway key's owner as `/v1/me` tells it."""

    key_id: str
    team: str
    project: str
    allowed_models: tuple[str, ...] = field(default=())

    @property
    def principal(self) -> str:
        """A stable, human-readable principal for audit fields such as `created_by`: team/project/key id."""
        return f"{self.team}/{self.project}/{self.key_id}"


@dataclass(frozen=True)
class Rejected:
    """The gateway refused the key (401/403); `code` is its error code (invalid_api_key, revoked_api_key, ...)."""

    code: str
    message: str


class GatewayUnavailable(Exception):
    """The gateway could not be reached, or answered with something other than 200/401/403."""


def key_digest(key: str) -> str:
    """SHA-256 hex of a key: the same digest the gateway stores and publishes on its change feed."""
    return hashlib.sha256(key.encode()).hexdigest()


def unavailable_error(exc: Exception) -> APIError:
    """The one 503 every service answers when the gateway cannot verify a key."""
    return APIError(
        503, GATEWAY_UNAVAILABLE, f"cannot verify the key with the gateway: {exc}", headers={"retry-after": "5"}
    )


class IdentityCache(FeedCache[Identity | Rejected]):
    """Digest -> answer with a TTL and an LRU bound; holds nothing unless `live` (the change feed is subscribed)."""


class GatewayIdentity:
    """Resolves gateway keys through `/v1/me`; cached per digest, invalidated by the gateway's key-change feed.

    `redis` (or `redis_url`) is the gateway's Redis and `prefix` its key prefix (GATEWAY_REDIS_PREFIX). Without
    either, there is no feed and so no cache: correct, one /v1/me call per request.
    """

    def __init__(
        self,
        gateway_url: str,
        *,
        redis: Redis | None = None,
        redis_url: str | None = None,
        prefix: str = "llmops:gw",
        ttl_s: float = 5.0,
        timeout_s: float = 5.0,
        max_entries: int = 10_000,
        http: AsyncHTTP | None = None,
    ) -> None:
        self.url = gateway_url.rstrip("/") + "/v1/me"
        self.cache = IdentityCache(ttl_s, max_entries)
        self.channel = f"{prefix}:keys:changed"
        self._own_redis = redis is None and redis_url is not None
        self._redis = redis if redis is not None else (Redis.from_url(redis_url) if redis_url else None)
        self._own_http = http is None
        self._http = http or AsyncHTTP(timeout_s=timeout_s)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self, wait_s: float = 2.0) -> None:
        """Start the change-feed listener; returns once subscribed, or after `wait_s` (then retrying behind)."""
        if self._redis is None or self._task is not None:
            return
        self._task = asyncio.create_task(self._listen(self._redis), name="identity-key-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), wait_s)

    async def aclose(self) -> None:
        """Stop the listener and close what this client opened."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._own_redis and self._redis is not None:
            await self._redis.aclose()
        if self._own_http:
            await self._http.aclose()

    async def lookup(self, key: str) -> Identity | Rejected:
        """The key's identity, or the gateway's refusal; raises GatewayUnavailable."""
        digest = key_digest(key)
        hit = self.cache.get(digest)
        if hit is not None:
            return hit
        generation = self.cache.generation
        try:
            resp = await self._http.get(self.url, headers={"authorization": f"Bearer {key}"})
        except HTTPError as exc:
            raise GatewayUnavailable(f"gateway unreachable at {self.url}: {exc!r}") from exc
        answer: Identity | Rejected
        if resp.status_code in (401, 403):
            answer = _rejection(resp)
        elif resp.status_code == 200:
            try:
                body = resp.json()
                answer = Identity(
                    key_id=str(body["key_id"]),
                    team=str(body["team"]),
                    project=str(body.get("project") or ""),
                    allowed_models=tuple(str(m) for m in body.get("allowed_models") or ()),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise GatewayUnavailable(f"gateway /v1/me answered an unexpected body: {exc!r}") from exc
        else:
            raise GatewayUnavailable(f"gateway /v1/me answered {resp.status_code}")
        self.cache.put(digest, answer, generation)
        return answer

    async def resolve(self, key: str) -> Identity | None:
        """The key's identity, None when the gateway refuses it; raises GatewayUnavailable."""
        answer = await self.lookup(key)
        return answer if isinstance(answer, Identity) else None

    async def authenticate(self, authorization: str | None) -> Identity:
        """An `Authorization` header to an identity, or the APIError to answer (401, or 503 gateway_unavailable)."""
        key = bearer_token(authorization)
        if key is None:
            raise APIError(401, "missing_api_key", "send your gateway key as 'Authorization: Bearer <key>'")
        try:
            answer = await self.lookup(key)
        except GatewayUnavailable as exc:
            raise unavailable_error(exc) from exc
        if isinstance(answer, Rejected):
            raise APIError(401, answer.code, answer.message)
        return answer

    async def _listen(self, redis: Redis) -> None:
        """Subscribe and forget what the gateway announces; on any interruption, empty the cache and resubscribe."""
        backoff = 0.1
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "subscribe":
                        # Only once Redis confirms are announcements certain to reach us: cache from here on.
                        self.cache.clear()  # changes made while we were not listening are unknown
                        self.cache.live = True
                        self.subscribed.set()
                        backoff = 0.1
                        continue
                    data = message.get("data")
                    if isinstance(data, bytes):
                        data = data.decode()
                    if message.get("type") == "message" and isinstance(data, str):
                        self.cache.forget(data)
            except (RedisError, OSError) as exc:
                log.warning("gateway key-change feed interrupted; not caching until back", extra={"error": str(exc)})
                self.subscribed.clear()
                self.cache.live = False
                self.cache.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.cache.live = False  # also on cancellation: no feed, no cache
                self.cache.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()


def _rejection(resp: Reply) -> Rejected:
    """The gateway's own error code and message when its body has them."""
    code, message = "invalid_api_key", "the gateway does not accept this key"
    with contextlib.suppress(ValueError, AttributeError):
        err = resp.json().get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or message)
    return Rejected(code, message)
