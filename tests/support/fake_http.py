"""In-process fakes of llmops_common.http's two faces for unit tests: every call goes to `handler(sent)`, which
answers a Reply or raises (aiohttp.ClientConnectionError: the server is down). `seen` records every call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from llmops_common.http import AsyncHTTP, BlockingHTTP, Reply


@dataclass(frozen=True)
class Sent:
    """One request as the fake received it."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes

    @property
    def path(self) -> str:
        """The path with its query string, as sent."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def json(self) -> Any:
        return orjson.loads(self.content)


Handler = Callable[[Sent], Reply]


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status, {"content-type": "application/json", **(headers or {})}, orjson.dumps(body))


def _sent(http: AsyncHTTP, method: str, url: str, json: Any, headers: dict[str, str] | None) -> Sent:
    args = http._args(url, headers, json, {})
    headers = {k.lower(): v for k, v in args["headers"].items()}
    return Sent(method, args["url"], headers, args.get("data") or b"")


class FakeAsyncHTTP(AsyncHTTP):
    """AsyncHTTP answered by `handler`."""

    def __init__(self, handler: Handler, base_url: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, headers=headers)
        self.handler = handler
        self.seen: list[Sent] = []

    async def request(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        self.seen.append(sent := _sent(self, method, url, json, headers))
        return self.handler(sent)


class FakeBlockingHTTP(BlockingHTTP):
    """BlockingHTTP answered by `handler`."""

    def __init__(self, handler: Handler, base_url: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, headers=headers)
        self.handler = handler
        self.seen: list[Sent] = []

    def request(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        self.seen.append(sent := _sent(self._http, method, url, json, headers))
        return self.handler(sent)
