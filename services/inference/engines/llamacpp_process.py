"""llama.cpp in a child process per model version, spoken to over loopback HTTP (the default CPU engine).

Why a child: xllamacpp builds its server holding the GIL for the whole model load (0.1-0.3 s for SmolLM2, far
longer for bigger models), so a load in the service's process stops every request it is serving, the old
version's included, during a hot swap. In a child the load stops nothing here. The cost is one loopback HTTP hop
per request; the child speaks llama.cpp's own OpenAI-compatible API, so the hop is the same adapter the GPU path
uses for vLLM (openai_upstream.py), with llama.cpp's error objects mapped exactly as in-process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from services.inference.engines.base import EngineUnavailable, Kind
from services.inference.engines.llamacpp import LlamaCppEngine, map_engine_error, packaged_smollm2_path
from services.inference.engines.llamacpp_child import READY, set_autogroup_nice
from services.inference.engines.openai_upstream import OpenAIUpstreamEngine, upstream_error
from services.inference.registry_source import resolve_artifact

if TYPE_CHECKING:
    from services.inference.registry_source import VersionSpec
    from services.inference.settings import InferenceSettings

log = logging.getLogger("inference.llamacpp.process")

_REPO = Path(__file__).resolve().parents[3]  # so `python -m services...` resolves wherever the service runs
_STOP_GRACE_S = 5.0
# llama.cpp's CPU threads meet at OpenMP barriers thousands of times per token. libgomp spins 300,000 times
# before it sleeps, unless it sees more of its threads than CPUs; then it spins 1,000 times, so threads that
# cannot all run at once hand over the core instead of burning it. It only sees its own process's threads: two
# children (old and new version during a swap) with 2 threads each on 2 cores would spin against each other,
# and the serving version's requests slowed from ~0.1 s to 1-3 s while the new one loaded. 1,000 is what
# libgomp itself picks when oversubscribed (and what in-process loading got for free).
_GOMP_SPINCOUNT = "1000"
_OUTPUT_TAIL_LINES = 20


def can_raise_priority() -> bool:
    """Whether this process may lower a nice value again (CAP_SYS_NICE), which loading niced relies on."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 23))  # bit 23: CAP_SYS_NICE
    except OSError:
        pass
    return False


def llamacpp_error(status: int, body: bytes) -> Exception:
    """llama.cpp's structured error object -> the same errors (codes, messages) as the in-process engine."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("type"):
        return map_engine_error(error)
    return upstream_error(status, body)


class LlamaCppProcessEngine:
    """Starts `llamacpp_child` for one model version and forwards requests to it; stop() ends the child."""

    name = "llama.cpp"

    def __init__(
        self,
        model_path: Path,
        *,
        context_length: int,
        parallel_slots: int,
        threads: int,
        http_port: int = 0,
        start_timeout_s: float = 120.0,
        request_timeout_s: float = 120.0,
        load_nice: int = 0,
        restart_after_s: float = 0.0,
        prefill_chunk_tokens: int = 0,
        serve_nice: int = 0,
    ) -> None:
        self.model_path = model_path
        self.context_length = context_length
        self.parallel_slots = parallel_slots
        self.threads = threads
        self.http_port = http_port
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.start_timeout_s = start_timeout_s
        self.request_timeout_s = request_timeout_s
        # Loading at low priority only helps if normal priority can be given back; otherwise the version would
        # serve niced for its whole life.
        self.load_nice = load_nice if load_nice and can_raise_priority() else 0
        # Serving below the service's own priority needs no privilege (anyone may lower their priority).
        self.serve_nice = serve_nice
        self.restart_after_s = restart_after_s  # 0: a child that dies stays dead (the service is then not ready)
        self.restarts = 0
        self._stopping = False
        self._restarting: asyncio.Task[None] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ended: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()  # children whose output ended
        self._reader: threading.Thread | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=_OUTPUT_TAIL_LINES)
        self._address: str | None = None
        self._upstream: OpenAIUpstreamEngine | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def engine_http_address(self) -> str | None:
        """llama.cpp's own OpenAI-compatible HTTP server in the child (used to benchmark the raw engine)."""
        return self._address

    async def start(self) -> None:
        """Spawn the child off the event loop and wait (bounded) for its READY line."""
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model file {self.model_path} does not exist")
        self._stopping = False
        await self._launch(self.load_nice)

    async def _launch(self, nice: int, restart: bool = False) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str | None] = loop.create_future()
        # Loading niced goes below the serving priority (os.nice caps it at 19), so a swap's new version stays
        # behind the one serving.
        self._proc = await loop.run_in_executor(None, self._spawn, nice + self.serve_nice)
        self._reader = threading.Thread(
            target=self._read_output, args=(self._proc, loop, ready), name=f"llamacpp-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        try:
            address = await asyncio.wait_for(ready, self.start_timeout_s)
        except TimeoutError:
            await self._shutdown()
            raise RuntimeError(
                f"llama.cpp child (pid {self.pid}) did not load {self.model_path} within {self.start_timeout_s} s; "
                f"its last output: {self._tail()}"
            ) from None
        if address is None:  # the child closed its output: it is exiting
            code = await loop.run_in_executor(None, self._proc.wait)
            await self._shutdown()
            raise RuntimeError(
                f"llama.cpp child exited with status {code} before loading {self.model_path}; "
                f"its last output: {self._tail()}"
            )
        upstream = OpenAIUpstreamEngine(
            address + "/v1",
            upstream_model=self.model_path.name,
            api_key=None,
            context_length=self.context_length,
            timeout_s=self.request_timeout_s,
            map_error=llamacpp_error,
            close_streams=True,  # its server closes a connection after each stream (openai_upstream.py)
        )
        await upstream.start()
        # Published together, after the last await: whoever sees the engine ready (another thread included) also
        # sees the restart counted and the new address.
        if restart:
            self.restarts += 1
        self._address = address
        self._upstream = upstream
        log.info("model loaded", extra={"model_path": str(self.model_path), "engine_http": address, "pid": self.pid})

    def _spawn(self, nice: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "services.inference.engines.llamacpp_child", "--model", str(self.model_path)]
        cmd += ["--context-length", str(self.context_length), "--parallel-slots", str(self.parallel_slots)]
        cmd += ["--threads", str(self.threads), "--port", str(self.http_port), "--nice", str(nice)]
        cmd += ["--prefill-chunk-tokens", str(self.prefill_chunk_tokens)]
        env = {"GOMP_SPINCOUNT": _GOMP_SPINCOUNT, **os.environ}  # an operator's own setting wins
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p)
        log.info("starting a llama.cpp child", extra={"model_path": str(self.model_path), "cmd": cmd})
        # stdin stays open for the child's life: its EOF tells the child that we are gone. A session of its own:
        # with the kernel's autogroup scheduling (sched_autogroup_enabled, on in most distributions' kernels) each
        # session shares the CPU as one group and a nice value only orders threads inside their own group, so in
        # this service's session the engine's nice did nothing against guardrails or the gateway (each `make up`
        # service has its own session). The child sets its own group's nice (llamacpp_child.py).
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def _read_output(
        self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, ready: asyncio.Future[str | None]
    ) -> None:
        """Reader thread: resolve `ready` with the child's address (None if it exits first); log the rest."""

        def resolve(address: str | None) -> None:
            if not ready.done():
                ready.set_result(address)

        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if line.startswith(READY + " ") and not ready.done():
                    loop.call_soon_threadsafe(resolve, line.split(" ", 1)[1])
                elif line:
                    self._output.append(line)
                    log.info("llama.cpp child output", extra={"pid": proc.pid, "line": line})
        # Its output ended: the child is exiting. Marked here, at once, because Popen.poll() answers None while
        # another thread holds its wait lock, so readiness must not rest on poll() alone.
        self._ended.add(proc)
        with contextlib.suppress(RuntimeError):  # the loop is gone (service shut down): nobody waits any more
            loop.call_soon_threadsafe(resolve, None)
            loop.call_soon_threadsafe(self._child_exited, proc)

    def _child_exited(self, proc: subprocess.Popen[bytes]) -> None:
        """On the loop: a child's output ended. Unless we stopped it, start a new one after a pause."""
        if self._stopping or proc is not self._proc or self.restart_after_s <= 0 or self._upstream is None:
            return  # stopped on purpose, an older child, restarts off, or it never finished loading
        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.create_task(self._restart(), name=f"llamacpp-restart-{proc.pid}")

    async def _restart(self) -> None:
        """Bring a dead child back (requests meanwhile get 503 engine_unavailable); back off while it keeps failing."""
        delay = self.restart_after_s
        while not self._stopping:
            code = self._proc.poll() if self._proc is not None else None
            log.error(
                "llama.cpp child died; restarting it",
                extra={"pid": self.pid, "status": code, "in_s": delay, "last_output": self._tail()},
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._shutdown()
            try:
                await self._launch(0, restart=True)  # nothing else loads now: no reason to load niced
            except (RuntimeError, OSError) as exc:
                log.error("llama.cpp child restart failed", extra={"error": str(exc)})
                delay = min(delay * 2, 30.0)
                continue
            log.warning("llama.cpp child restarted", extra={"pid": self.pid, "restarts": self.restarts})
            return

    def _tail(self) -> str:
        return " | ".join(self._output) or "(nothing)"

    async def stop(self) -> None:
        """End the child (SIGTERM, SIGKILL if it lingers), then close the connection pool; no restart after this."""
        self._stopping = True
        restarting = self._restarting
        if restarting is not None and restarting is not asyncio.current_task():
            restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await restarting
        await self._shutdown()

    async def _shutdown(self) -> None:
        upstream, self._upstream = self._upstream, None  # not ready from here on: new requests get a 503
        if self._proc is not None:
            # Child first: a request still running (a drain that timed out) then fails as unavailable, instead
            # of meeting a closed connection pool.
            await asyncio.get_running_loop().run_in_executor(None, self._end_child)
        if upstream is not None:
            await upstream.stop()

    def _end_child(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("llama.cpp child ignored SIGTERM; killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(_STOP_GRACE_S)

    def restore_priority(self) -> None:
        """Give every thread of a child that loaded niced its serving priority back (called once it is warm): the
        service's own nice value plus serve_nice, never 0. Under `nice -n 10 make load` a reset to 0 served the
        engine at a higher priority than the gateway and guardrails (nice 10), and their requests queued behind
        the engine's threads for the CPU (a 16 ms guardrails check took 0.2-0.9 s under load)."""
        if not self.load_nice or self._proc is None:
            return  # it loaded at its serving priority already
        serving = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.serve_nice)
        try:
            for tid in os.listdir(f"/proc/{self._proc.pid}/task"):  # nice is per thread on Linux
                os.setpriority(os.PRIO_PROCESS, int(tid), serving)
        except (OSError, ValueError) as exc:
            log.warning("llama.cpp child keeps its load priority", extra={"pid": self.pid, "error": str(exc)})
        set_autogroup_nice(serving, self._proc.pid)

    def is_ready(self) -> bool:
        """Ready while the child that loaded the model is alive."""
        proc = self._proc
        return self._upstream is not None and proc is not None and proc not in self._ended and proc.poll() is None

    async def refresh_ready(self) -> bool:
        """Whether the child is still alive (a dead one is restarted by its own watcher, not here)."""
        return self.is_ready()

    def _client(self) -> OpenAIUpstreamEngine:
        if self._upstream is None or not self.is_ready():
            code = self._proc.poll() if self._proc is not None else None
            state = f"exited with status {code}" if code is not None else "is not running"
            raise EngineUnavailable(f"the llama.cpp process of this model version {state}")
        return self._upstream

    async def generate(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any]:
        """One non-streaming generation in the child."""
        result = await self._client().generate(kind, payload)
        result.pop("timings", None)  # llama.cpp's own profiling, not part of the OpenAI shape
        return result

    async def stream(self, kind: Kind, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Chunks from the child's SSE stream, the last one carrying usage."""
        async for chunk in self._client().stream(kind, payload):
            chunk.pop("timings", None)
            yield chunk


def build(settings: InferenceSettings, spec: VersionSpec | None) -> LlamaCppEngine | LlamaCppProcessEngine:
    """The engine `llamacpp`: a GGUF file (the version's artifact, or the settings' / packaged SmolLM2)."""
    args = spec.engine_args if spec else {}
    if spec is not None:
        model_path = resolve_artifact(spec.artifact_uri)
    else:
        model_path = Path(settings.model_path) if settings.model_path else packaged_smollm2_path()
    context_length = int(args.get("n_ctx") or (spec.context_length if spec else settings.context_length))
    parallel_slots = int(args.get("parallel_slots") or settings.parallel_slots)
    # A fixed port only for the one model from the settings: versions loaded side by side in a swap need two.
    http_port = settings.engine_http_port if spec is None or settings.registry_url is None else 0
    if settings.engine_isolation == "in_process":
        return LlamaCppEngine(
            model_path,
            context_length=context_length,
            parallel_slots=parallel_slots,
            threads=settings.threads,
            http_port=http_port,
            prefill_chunk_tokens=settings.prefill_chunk_tokens,
        )
    return LlamaCppProcessEngine(
        model_path,
        context_length=context_length,
        parallel_slots=parallel_slots,
        threads=settings.threads,
        http_port=http_port,
        start_timeout_s=settings.engine_start_timeout_s,
        request_timeout_s=settings.upstream_timeout_s,
        load_nice=settings.engine_load_nice,
        restart_after_s=settings.engine_restart_s,
        prefill_chunk_tokens=settings.prefill_chunk_tokens,
        serve_nice=settings.engine_nice,
    )
