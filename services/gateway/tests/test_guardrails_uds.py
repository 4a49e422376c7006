"""GATEWAY_GUARDRAILS_UDS: the gateway reaches a guardrails service on the same host over its Unix socket (uvicorn
--uds), the checks and the policy lookups alike; the URL still names the service."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.gateway.guardrails import GuardrailsClient
from services.gateway.messages import Segment
from services.gateway.tests import stage_fakes as f
from tests.support.fake_guardrails import FakeGuardrails


async def test_checks_go_over_the_unix_socket(tmp_path: Path) -> None:
    fake = FakeGuardrails()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    socket = str(tmp_path / "guardrails.sock")
    await web.UnixSite(runner, socket).start()
    # No TCP listener anywhere: an answer can only have come through the socket.
    client = GuardrailsClient("http://guardrails", 2000, "closed", f.metrics(), token="t", uds=socket)
    await client.start()
    try:
        verdict, texts = await client.check_input([Segment(0, "user", ("content",), "hello there")], "team-a", "p")
        assert (verdict.decision, texts) == ("allow", [None])
        assert [c["path"] for c in fake.calls] == ["/v1/policies/team-a", "/v1/check/input"]
        assert {c["authorization"] for c in fake.calls} == {"Bearer t"}
    finally:
        await client.stop()
        await runner.cleanup()
