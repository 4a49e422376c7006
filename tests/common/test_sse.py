"""The one SSE reader (llmops_common.sse.SSEReader) that the gateway, inference and RAG read streams with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmops_common.sse import DONE, SSEReader, sse_frame


async def _lines(*lines: bytes) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


async def test_reads_data_up_to_done_and_says_it_came() -> None:
    """Comments, blank lines and other fields are skipped; [DONE] ends the stream and is not yielded."""
    raw = sse_frame({"a": 1}) + b": keep-alive\n\nevent: x\n" + sse_frame({"b": 2}) + DONE + sse_frame({"late": 1})
    reader = SSEReader(_lines(*raw.splitlines(keepends=True)))
    assert [e async for e in reader.events()] == [{"a": 1}, {"b": 2}]
    assert reader.done


async def test_a_stream_cut_before_done() -> None:
    """A stream that closes without [DONE] leaves `done` False for the caller to refuse."""
    reader = SSEReader(_lines(b'data: {"a": 1}\n', b"\n", b'data:{"b":2}'))
    assert [data async for data in reader] == [b'{"a": 1}', b'{"b":2}']
    assert not reader.done


async def test_bad_json_is_a_value_error() -> None:
    """A broken event is an error the caller maps (502 at the gateway), never silently dropped."""
    with pytest.raises(ValueError):
        [e async for e in SSEReader(_lines(b"data: {nope\n")).events()]
