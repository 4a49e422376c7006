"""The OpenAI-compatible upstream adapter (the GPU path's vLLM adapter) against a real OpenAI-compatible
server running here: llama.cpp's own HTTP server with the real model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.inference.engines.base import EngineError, EngineUnavailable
from services.inference.engines.llamacpp import LlamaCppEngine, packaged_smollm2_path
from services.inference.engines.openai_upstream import OpenAIUpstreamEngine
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def llama_server() -> AsyncIterator[str]:
    engine = LlamaCppEngine(packaged_smollm2_path(), context_length=1024, parallel_slots=1, threads=2)
    await engine.start()
    assert engine.engine_http_address
    yield engine.engine_http_address + "/v1"
    await engine.stop()


async def test_generate_and_stream_through_the_adapter(llama_server: str) -> None:
    adapter = OpenAIUpstreamEngine(
        llama_server, upstream_model="smollm2", api_key=None, context_length=128, timeout_s=60
    )
    await adapter.start()
    try:
        assert adapter.is_ready()
        assert adapter.context_length == 1024  # learned from the upstream's /models
        body = {"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 5, "temperature": 0}
        result = await adapter.generate("chat", body)
        assert result["choices"][0]["message"]["content"] and result["usage"]["completion_tokens"] <= 5
        chunks = [c async for c in adapter.stream("chat", body)]
        assert chunks[-1]["usage"]["completion_tokens"] <= 5
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        assert text == result["choices"][0]["message"]["content"]  # same greedy answer both ways
        with pytest.raises(EngineError) as err:
            await adapter.generate("chat", {"messages": [{"role": "user", "content": "w " * 3000}], "max_tokens": 2})
        assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    finally:
        await adapter.stop()


async def test_unreachable_upstream_is_unavailable_not_a_crash() -> None:
    adapter = OpenAIUpstreamEngine(
        f"http://127.0.0.1:{free_port()}/v1", upstream_model="m", api_key=None, context_length=128, timeout_s=2
    )
    await adapter.start()
    try:
        assert not adapter.is_ready()
        with pytest.raises(EngineUnavailable):
            await adapter.generate("chat", {"messages": [{"role": "user", "content": "x"}]})
    finally:
        await adapter.stop()
