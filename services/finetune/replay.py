"""Replay: general chat rows mixed into a task's training set so the tune keeps the rest while it learns the task.

Measured (solutions/09-bonus-eval-metrics/loop.md): trained on task rows alone, the LoRA learns the strict JSON
format by shifting the model's general distribution, and the regression set's perplexity passes finetune-gate's
1.05 x before the task's exact match reaches production-gate's 0.8. Replay rows pull the other way: general
prompts answered by the BASE model itself (through the same llama.cpp engine that serves it, as evaluate.py
generates, but sampled at temperature 1 rather than greedy: see SAMPLING), so training on them teaches nothing new,
only "stay where you were" on everything that is not the task (self-distillation on the base's outputs; no second
model, no outside answers).

What may not be replayed, because it would leak the evaluation: the regression set's prompts or answers (any
prompt that contains or is contained in a regression prompt is dropped) and the task's held-out rows (replay
rows are marked with a `replay` key and pipeline.split always puts them on the training side; they are general
prompts, never task rows).

Prompts: data/replay_prompts.jsonl, the Self-Instruct prompts (Apache-2.0; see data/README.md) of at most 200
characters. Two thirds of the base's answers run past the 64-token budget (measured: 196 of 290); such a row is
kept as a prefix, marked `"cut": true`, and chat.encode trains it without the closing <|im_end|>, so it teaches
the base's first 64 tokens and never "stop mid-sentence" (but measured, such prefixes unlearn stopping after a short
answer; `complete_only` / `--replay-complete-only` drops them). The answers are cached per (base GGUF sha256, prompts,
budget), so `data --replay N` generates once per machine (11 min for the 290 prompts on 2 busy cores); the rows
chosen are a seeded shuffle.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.finetune.settings import REPO_ROOT

REPLAY_PROMPTS = REPO_ROOT / "services" / "finetune" / "data" / "replay_prompts.jsonl"
REPLAY_SOURCE = "self-instruct"
MAX_ANSWER_TOKENS = 64  # the regression set's generation budget (RunSpec.max_new_tokens)
REPLAY_VERSION = 2  # part of the answers' cache key: bump when how answers are generated changes
# Sampled from the base's full distribution (llama.cpp's top-k/top-p/min-p filters off), seeded: NOT greedy. Measured
# (solutions/09-bonus-eval-metrics/loop.md): greedy replay answers made the regression perplexity much worse (1.81 x
# the base's at 45 x 8 with 240 replay rows, against 1.10 x for 30 x 8 without replay): training on the model's
# own mode sharpens it, and every other phrasing (the regression set's references) loses probability. A sample
# of the base's own distribution is the unbiased version: the expected gradient of its NLL is zero at the base,
# so the mix is the cross-entropy against the base, i.e. it pulls back only as far as the tune drifts away.
SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}

# (prompts as chat messages, token budget) -> (answer, cut by the budget) per prompt.
Generator = Callable[[list[list[dict[str, str]]], int], list[tuple[str, bool]]]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def load_prompts(path: Path, exclude: list[str]) -> list[dict[str, str]]:
    """The prompt file's rows ({"id", "prompt", ...}), minus any that overlaps an excluded prompt (the regression
    set's): normalised, one contains the other."""
    banned = [_norm(t) for t in exclude if _norm(t)]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if not any(b in _norm(r["prompt"]) or _norm(r["prompt"]) in b for b in banned)]


def engine_generator(gguf: Path) -> Generator:
    """Answers of the served engine (llama.cpp child process) running `gguf`, as the evaluation makes them but
    sampled (SAMPLING, seed 0 per request)."""
    from services.finetune import evaluate

    return lambda prompts, budget: evaluate.engine_generate(gguf, prompts, budget, sampling=SAMPLING)


def base_answers(
    prompts: list[dict[str, str]], generate: Generator, cache_dir: Path, model_sha: str, budget: int
) -> dict[str, dict[str, Any]]:
    """prompt id -> {"answer", "cut"}: generated once, then read from `cache_dir` (keyed by the model, the
    prompts and the budget, so another base model or prompt file generates afresh)."""
    blob = json.dumps([model_sha, prompts, budget, SAMPLING, REPLAY_VERSION], sort_keys=True)
    cache = cache_dir / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["answers"]
    generated = generate([[{"role": "user", "content": p["prompt"]}] for p in prompts], budget)
    answers = {p["id"]: {"answer": a, "cut": cut} for p, (a, cut) in zip(prompts, generated, strict=True)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"model_sha256": model_sha, "budget": budget, "answers": answers}))
    return answers


def replay_rows(
    prompts: list[dict[str, str]],
    answers: dict[str, dict[str, Any]],
    n: int,
    seed: int,
    model: str,
    complete_only: bool = False,
) -> list[dict[str, Any]]:
    """`n` chat rows from the non-empty answers (only those that ended by themselves with `complete_only`), a
    seeded shuffle; each marked `replay` (with `cut`: a prefix)."""
    usable = [p for p in prompts if answers[p["id"]]["answer"].strip()]
    usable = [p for p in usable if not (complete_only and answers[p["id"]]["cut"])]
    if n > len(usable):
        raise ValueError(f"--replay {n}: only {len(usable)} replay prompts have a base answer")
    random.Random(seed).shuffle(usable)
    return [
        {
            "messages": [
                {"role": "user", "content": p["prompt"]},
                {"role": "assistant", "content": answers[p["id"]]["answer"].strip()},
            ],
            "replay": {"source": REPLAY_SOURCE, "id": p["id"], "answer_by": model, "cut": answers[p["id"]]["cut"]},
        }
        for p in usable[:n]
    ]


def is_replay(row: dict[str, Any]) -> bool:
    return "replay" in row


def build(
    n: int,
    seed: int,
    cache_dir: Path,
    base_gguf: Path,
    model: str,
    exclude: list[str],
    generate: Generator | None = None,
    prompts_path: Path = REPLAY_PROMPTS,
    complete_only: bool = False,
) -> list[dict[str, Any]]:
    """The replay rows of `data --replay n`: base answers (cached) to the prompt file's prompts."""
    from services.finetune.gguf_io import file_sha256

    prompts = load_prompts(prompts_path, exclude)
    answers = base_answers(
        prompts, generate or engine_generator(base_gguf), cache_dir, file_sha256(base_gguf), MAX_ANSWER_TOKENS
    )
    return replay_rows(prompts, answers, n, seed, model, complete_only)
