"""What the settings hand llama.cpp: the prefill chunk (n_batch) and the serving priority reach the engine."""

from __future__ import annotations

import pytest

from services.inference.engines.llamacpp import packaged_smollm2_path, server_params
from services.inference.engines.llamacpp_process import LlamaCppProcessEngine, build
from services.inference.settings import InferenceSettings


def test_a_prompt_is_read_in_chunks_so_running_generations_keep_going() -> None:
    """n_batch caps the tokens of one decode step: a long prompt is read 256 tokens at a time, and the running
    generations get their next token between two chunks (llama.cpp's 2048 read a RAG prompt in one step)."""
    params = server_params(
        packaged_smollm2_path(), context_length=512, parallel_slots=2, threads=1, http_port=0, prefill_chunk_tokens=256
    )
    assert params.n_batch == 256
    assert params.n_ubatch <= 256  # llama.cpp needs n_ubatch <= n_batch
    default = server_params(packaged_smollm2_path(), context_length=512, parallel_slots=2, threads=1, http_port=0)
    assert default.n_batch == 2048  # 0: llama.cpp's own


def test_the_settings_reach_the_child_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_PREFILL_CHUNK_TOKENS", "128")
    monkeypatch.setenv("INFERENCE_ENGINE_NICE", "7")
    engine = build(InferenceSettings(dev_mode=True), None)
    assert isinstance(engine, LlamaCppProcessEngine)
    assert (engine.prefill_chunk_tokens, engine.serve_nice) == (128, 7)
    spawned: list[list[str]] = []
    monkeypatch.setattr("subprocess.Popen", lambda cmd, **_: spawned.append(cmd))
    engine._spawn(engine.serve_nice)  # as _launch spawns a child that does not load niced
    cmd = spawned[0]
    assert cmd[cmd.index("--prefill-chunk-tokens") + 1] == "128"
    assert cmd[cmd.index("--nice") + 1] == "7"


def test_defaults_serve_below_the_service_and_read_prompts_in_chunks() -> None:
    settings = InferenceSettings(dev_mode=True)
    assert settings.engine_nice > 0
    assert 0 < settings.prefill_chunk_tokens < 2048
