"""Check exercise 8: a fallback deployment and a fast-opening circuit in work/routes.yaml.

Loads the file with the gateway's RouteTable, then sends requests through the gateway's UpstreamClient to two
fake deployments (primary 503, backup 200). Usage: check.py [--work DIR].
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import REPO, Report, parser

sys.path[:0] = [str(REPO), str(REPO / "libs")]
HERE = Path(__file__).resolve().parent
MODEL = "smollm2-135m-instruct"


async def _fake(status: int, name: str):
    """A tiny OpenAI-compatible deployment that always answers `status`; returns (runner, url, hits)."""
    from aiohttp import web

    hits: list[int] = []

    async def chat(request: web.Request) -> web.Response:
        hits.append(1)
        if status != 200:
            return web.json_response({"error": {"message": "down", "code": "down"}}, status=status)
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": f"from {name}"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1", hits


async def _exercise(report: Report, routes_file: Path) -> None:
    from prometheus_client import CollectorRegistry

    from services.gateway.metrics import GatewayMetrics
    from services.gateway.routing import CircuitBreaker, RouteConfigError, RouteTable
    from services.gateway.upstream import UpstreamClient

    primary, primary_url, primary_hits = await _fake(503, "primary")
    backup, backup_url, _backup_hits = await _fake(200, "backup")
    os.environ["GATEWAY_INFERENCE_URL"], os.environ["GATEWAY_BACKUP_URL"] = primary_url, backup_url
    metrics = GatewayMetrics(CollectorRegistry())
    client = UpstreamClient(metrics)
    await client.start()
    try:
        try:
            table = RouteTable.from_file(routes_file)
        except RouteConfigError as exc:
            report.abort(f"the gateway cannot load {routes_file.name}: {exc}", "compare with routes.yaml's format")
        route = table.get(MODEL)
        if not report.check(route is not None, f"{MODEL} is routed", f"keep the `- name: {MODEL}` entry"):
            return
        deps = {d.name: d for d in route.deployments}
        report.check(len(deps) >= 2, f"{MODEL} has {len(deps)} deployments (need 2+)", "add `backup-inference`")
        local, back = deps.get("local-inference"), deps.get("backup-inference")
        if not report.check(local is not None and back is not None, "deployments local-inference and backup-inference"):
            return
        report.check(local.url == primary_url, "local-inference reads its URL from ${GATEWAY_INFERENCE_URL:-...}")
        report.check(
            back.url == backup_url,
            "backup-inference reads its URL from ${GATEWAY_BACKUP_URL:-...}",
            "url: ${GATEWAY_BACKUP_URL:-http://127.0.0.1:8011/v1}",
        )
        report.check(back.priority > local.priority, "backup-inference has a higher priority number (tried later)")
        report.check(
            local.breaker.threshold == 2,
            f"local-inference circuit_failure_threshold is {local.breaker.threshold} (want 2)",
        )
        report.check(local.retries == 0, f"local-inference retries is {local.retries} (want 0)")
        if report.failures:
            return
        bodies = {
            d.name: b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]}'
            for d in route.deployments
        }
        served = []
        for _ in range(3):
            up = await client.open(route, "/chat/completions", bodies, stream=False)
            served.append((up.deployment.name, up.fallbacks))
            up.response.release()
        report.check(
            all(name == "backup-inference" for name, _ in served), f"every request was served by the backup: {served}"
        )
        report.check(served[0][1] == 1, "the first request counted one fallback")
        report.check(local.breaker.state == CircuitBreaker.OPEN, "after two failures the primary's circuit is open")
        report.check(
            len(primary_hits) == 2,
            f"the primary was tried {len(primary_hits)} times for 3 requests (want 2: the third skips it)",
            "retries: 0 and circuit_failure_threshold: 2 on local-inference",
        )
    finally:
        await client.stop()
        await primary.cleanup()
        await backup.cleanup()


def main() -> None:
    """Load the learner's routes file and drive a real fallback through it."""
    args = parser(__doc__ or "", HERE / "work").parse_args()
    report = Report("Exercise 8 - a fallback route")
    routes_file = args.work.resolve() / "routes.yaml"
    if not report.check(routes_file.exists(), f"{routes_file} exists"):
        report.finish()
    asyncio.run(_exercise(report, routes_file))
    report.finish()


if __name__ == "__main__":
    main()
