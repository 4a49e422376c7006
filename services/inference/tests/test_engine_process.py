"""The llama.cpp child process per model version (the default engine isolation), with the real SmolLM2 model:
its lifecycle, what a dead child means for requests, and the in_process setting that keeps llama.cpp inside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.engines.base import EngineUnavailable
from services.inference.engines.llamacpp import LlamaCppEngine, packaged_smollm2_path
from services.inference.engines.llamacpp_child import autogroup_nice
from services.inference.engines.llamacpp_process import LlamaCppProcessEngine, can_raise_priority
from services.inference.loader import build_engine
from services.inference.settings import InferenceSettings
from tests.support.servers import REPO

pytestmark = pytest.mark.integration
MODEL = "smollm2-135m-instruct"
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
# Long enough to be still generating when the child is killed a moment after it started.
LONG = {"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 400, "ignore_eos": True}


def process_engine() -> LlamaCppProcessEngine:
    return LlamaCppProcessEngine(packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=1)


def gone(pid: int) -> bool:
    """True when the process has exited (reaped, or a zombie waiting for a parent that is gone itself)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


async def test_two_versions_side_by_side_then_stop_leaves_no_process() -> None:
    old, new = process_engine(), process_engine()
    await asyncio.gather(old.start(), new.start())  # as in a swap: both loaded at once, each on its own port
    pids = [old.pid, new.pid]
    try:
        assert old.engine_http_address != new.engine_http_address
        for engine in (old, new):
            assert engine.is_ready()
            result = await engine.generate("chat", HI)
            assert result["usage"]["completion_tokens"] <= 2 and "timings" not in result
    finally:
        await old.stop()
        await new.stop()
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not old.is_ready() and not new.is_ready()


PARENT = """
import asyncio
from services.inference.engines.llamacpp import packaged_smollm2_path
from services.inference.engines.llamacpp_process import LlamaCppProcessEngine, can_raise_priority

async def main():
    engine = LlamaCppProcessEngine(packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=1)
    await engine.start()
    print(engine.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_a_service_killed_with_sigkill_takes_its_engine_process_with_it() -> None:
    # SIGKILL runs no cleanup in the parent: only the child's stdin reaching EOF can tell it to go.
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, cwd=REPO) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert wait_gone(child)


async def test_a_child_killed_mid_request_fails_that_request_fast() -> None:
    engine = process_engine()
    await engine.start()
    try:
        assert engine.pid is not None
        running = asyncio.create_task(engine.generate("chat", LONG))
        await asyncio.sleep(0.3)
        os.kill(engine.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(running, 10)
        assert time.monotonic() - started < 5
        assert wait_gone(engine.pid)  # the request can fail (connection reset) a moment before the exit is visible
        # The engine learns of the exit from its reader thread (end of the child's output) or from waitpid, an
        # instant after the kernel does: readiness converges, bounded, rather than at the same instant.
        deadline = time.monotonic() + 5
        while engine.is_ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not engine.is_ready()
        with pytest.raises(EngineUnavailable, match="exited"):
            await engine.generate("chat", HI)
    finally:
        await engine.stop()


async def test_a_model_that_cannot_load_fails_start_with_the_childs_words(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    engine = LlamaCppProcessEngine(broken, context_length=512, parallel_slots=1, threads=1)
    with pytest.raises(RuntimeError, match="exited with status") as err:
        await engine.start()
    assert "Failed to init server" in str(err.value)  # the tail of the child's own output
    assert engine.pid is not None and gone(engine.pid)


@pytest.fixture
def service() -> Iterator[TestClient]:
    """The real app (default settings: llama.cpp in a child process), small context for a quick load; a dead
    child is restarted only after 30 s, so the test sees the gap."""
    settings = InferenceSettings(context_length=512, parallel_slots=1, threads=1, engine_restart_s=30, dev_mode=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_dead_engine_process_makes_the_service_not_ready_with_a_clear_503(service: TestClient) -> None:
    body = {"model": MODEL, **HI}
    assert service.post("/v1/chat/completions", json=body).status_code == 200
    engine = service.app.state.serving.manager.production.engine  # type: ignore[attr-defined]
    assert isinstance(engine, LlamaCppProcessEngine) and engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while engine.is_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.get("/readyz").status_code == 503
    for stream in (False, True):
        response = service.post("/v1/chat/completions", json=body | {"stream": stream})
        assert response.status_code == 503 and response.headers["retry-after"]
        error = response.json()["error"]
        assert error["code"] == "engine_unavailable" and "not available" in error["message"]


def test_a_dead_engine_process_is_restarted_and_the_service_recovers() -> None:
    settings = InferenceSettings(context_length=512, parallel_slots=1, threads=1, engine_restart_s=0.2, dev_mode=True)
    body = {"model": MODEL, **HI}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        engine = client.app.state.serving.manager.production.engine  # type: ignore[attr-defined]
        assert isinstance(engine, LlamaCppProcessEngine) and engine.pid is not None
        first = engine.pid
        os.kill(first, signal.SIGKILL)
        assert wait_gone(first)
        deadline = time.monotonic() + 30
        while not (engine.is_ready() and engine.pid != first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.restarts == 1 and engine.pid != first
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        second = engine.pid
    assert second is not None and wait_gone(second)  # shutdown stops the restarted child too, and restarts nothing


def test_in_process_isolation_still_serves() -> None:
    settings = InferenceSettings(
        engine_isolation="in_process", context_length=512, parallel_slots=1, threads=1, dev_mode=True
    )
    assert isinstance(build_engine(settings), LlamaCppEngine)
    assert isinstance(build_engine(InferenceSettings()), LlamaCppProcessEngine)  # the default
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/chat/completions", json={"model": MODEL, **HI})
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] <= 2
        assert isinstance(client.app.state.serving.manager.production.engine, LlamaCppEngine)  # type: ignore[attr-defined]


def _thread_nices(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not can_raise_priority(), reason="needs CAP_SYS_NICE to give a loading child its priority back")
async def test_a_new_version_loads_niced_and_serves_at_normal_priority() -> None:
    engine = LlamaCppProcessEngine(
        packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=1, load_nice=10
    )
    await engine.start()
    try:
        assert engine.pid is not None
        await engine.generate("chat", HI)  # the warm-up: llama.cpp's compute threads now exist, all niced
        own = os.getpriority(os.PRIO_PROCESS, 0)  # 0, or 10 under `nice -n 10 make test`
        assert _thread_nices(engine.pid) == {min(19, own + 10)}
        engine.restore_priority()
        assert _thread_nices(engine.pid) == {own}  # the service's priority: never above it (as 0 was under nice)
        assert (await engine.generate("chat", HI))["choices"]
    finally:
        await engine.stop()


async def test_the_child_serves_below_the_services_priority() -> None:
    """serve_nice: the engine's threads run below the service's priority, so the other services on the host (a
    guardrails check, the gateway) get a core first when they have work; no privilege needed."""
    engine = LlamaCppProcessEngine(
        packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=1, load_nice=10, serve_nice=5
    )
    await engine.start()
    try:
        assert engine.pid is not None
        await engine.generate("chat", HI)  # llama.cpp's compute threads now exist
        engine.restore_priority()  # after loading niced (with CAP_SYS_NICE), or a no-op (without)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert _thread_nices(engine.pid) == {min(19, own + 5)}
        # Its own session, whose autogroup carries the same nice: with autogroups (most kernels) the scheduler
        # weighs sessions against each other, and in the service's session the threads' nice did nothing
        # against the other services (each in a session of its own under `make up`).
        assert os.getsid(engine.pid) == engine.pid != os.getsid(0)
        if autogroup_nice() is not None:
            assert autogroup_nice(engine.pid) == min(19, own + 5)
        assert (await engine.generate("chat", HI))["choices"]
    finally:
        await engine.stop()


def test_loading_niced_is_off_when_priority_could_not_be_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.inference.engines.llamacpp_process.can_raise_priority", lambda: False)
    engine = LlamaCppProcessEngine(
        packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=1, load_nice=10
    )
    assert engine.load_nice == 0  # a version must never serve niced for its whole life


async def test_streams_never_reuse_a_connection_the_child_closed() -> None:
    """llama.cpp's server closes the connection after each stream although it announces keep-alive; the engine
    asks for that (`Connection: close`) instead of pooling it, so each stream is sent once, on a live connection
    (before: half of the streams were first written to a dead socket and resent; two dead ones made a 503)."""
    engine = process_engine()
    await engine.start()
    try:
        upstream = engine._client()
        assert upstream._session is not None
        sent = 0
        post = upstream._session.post

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal sent
            sent += 1
            return post(*args, **kwargs)  # type: ignore[arg-type]

        upstream._session.post = counting  # type: ignore[method-assign]
        for _ in range(4):
            chunks = [chunk async for chunk in engine.stream("chat", HI)]
            assert chunks and chunks[-1].get("usage")
        assert sent == 4
        assert (await engine.generate("chat", HI))["usage"]["completion_tokens"] <= 2  # whole answers keep alive
    finally:
        await engine.stop()
