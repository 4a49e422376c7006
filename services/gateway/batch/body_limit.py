"""Per-path request body limits: batch uploads are far larger than any online request body."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from llmops_common.body_limit import BodySizeLimitMiddleware

MULTIPART_SLACK = 64 * 1024  # form boundaries and part headers around the uploaded file


class PathBodyLimitMiddleware:
    """BodySizeLimitMiddleware with a larger limit on the upload path, the default everywhere else."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_path: str, upload_max_bytes: int) -> None:
        self.default = BodySizeLimitMiddleware(app, max_bytes)
        self.upload = BodySizeLimitMiddleware(app, upload_max_bytes + MULTIPART_SLACK)
        self.upload_path = upload_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.upload_path:
            await self.upload(scope, receive, send)
        else:
            await self.default(scope, receive, send)
