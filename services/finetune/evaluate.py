"""Base vs tuned, on what is served: answers come from llama.cpp running each GGUF (the inference service's
engine), perplexity from the JAX forward on the weights read back from the same GGUF files.

Metrics: perplexity of the reference answers (lower is better; only comparable with the same tokenizer),
BLEU (sacrebleu, corpus level) and ROUGE-L F1 (rouge-score) against the references, and for the worked task
format accuracy (strict JSON with the right keys and types) and exact match (every field right).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np

from services.finetune import chat, task


def engine_answers(
    gguf: Path, prompts: list[list[dict[str, str]]], max_tokens: int, threads: int = 2, slots: int = 4
) -> list[str]:
    """Greedy answers of llama.cpp for each prompt, from the inference service's own engine: a llama.cpp child
    process (engines/llamacpp_process.py, with its OpenMP settings) serving `gguf` exactly as a version is served."""
    from services.inference.engines.llamacpp_process import LlamaCppProcessEngine

    engine = LlamaCppProcessEngine(
        gguf, context_length=1024, parallel_slots=slots, threads=threads, start_timeout_s=600, request_timeout_s=600
    )

    async def answer_all() -> list[str]:
        await engine.start()
        try:
            gate = asyncio.Semaphore(slots)

            async def ask(messages: list[dict[str, str]]) -> str:
                async with gate:
                    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0}
                    result = await engine.generate("chat", body)
                    return str(result["choices"][0]["message"].get("content") or "")

            return list(await asyncio.gather(*(ask(m) for m in prompts)))
        finally:
            await engine.stop()

    return asyncio.run(answer_all())


def perplexity(
    params: Any, config: Any, tokenizer: Any, template: str, examples: list[dict[str, Any]], batch_size: int = 8
) -> float:
    """exp(mean NLL of the reference answers' tokens given their prompts), over all examples' tokens."""
    import jax
    import jax.numpy as jnp

    from services.finetune.train import answer_nll, pack

    encoded = [chat.encode(tokenizer, template, e) for e in examples]
    data = pack(encoded, config.pad_id, max_len=4096)

    @jax.jit
    def total(batch: dict[str, jax.Array]) -> jax.Array:
        return answer_nll(params, {}, batch, config, 1.0) * batch["weights"].sum()

    nll, count = 0.0, 0.0
    for start in range(0, len(encoded), batch_size):
        rows = np.arange(start, start + batch_size) % len(encoded)  # fixed shape: pad with repeats, weighted 0
        weights = data.weights[rows] * (np.arange(start, start + batch_size) < len(encoded))[:, None]
        batch = {
            "tokens": jnp.asarray(data.tokens[rows]),
            "positions": jnp.asarray(data.positions[rows]),
            "targets": jnp.asarray(data.targets[rows]),
            "weights": jnp.asarray(weights),
        }
        nll += float(total(batch))
        count += float(weights.sum())
    return math.exp(nll / count)


def text_metrics(answers: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-L F1 (rouge-score, 0-1)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [scorer.score(ref, ans)["rougeL"].fmeasure for ans, ref in zip(answers, references, strict=True)]
    return {"bleu": float(sacrebleu.corpus_bleu(answers, [references]).score), "rougeL": float(np.mean(rouge))}


def task_metrics(answers: list[str], references: list[str]) -> dict[str, float]:
    scores = [task.score(a, r) for a, r in zip(answers, references, strict=True)]
    return {k: float(np.mean([s[k] for s in scores])) for k in ("format_ok", "exact", "fields")}


def bootstrap_ci(values: list[float], rounds: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (paired differences for base vs tuned)."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=np.float64)
    means = arr[rng.integers(0, len(arr), size=(rounds, len(arr)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def evaluate_model(
    gguf: Path, held_out: list[dict[str, Any]], regression: list[dict[str, Any]], max_tokens: int = 64
) -> dict[str, Any]:
    """Every metric of one GGUF; also returns the answers and per-example task scores (for the bootstrap)."""
    from services.finetune import gguf_io
    from services.finetune import model as M

    split = [chat.split_example(e) for e in held_out]
    reg = [chat.split_example(e) for e in regression]
    held_answers = engine_answers(gguf, [p for p, _ in split], max_tokens)
    reg_answers = engine_answers(gguf, [p for p, _ in reg], max_tokens)
    loaded = gguf_io.load(gguf)
    params = M.to_device(loaded.weights)
    held_refs, reg_refs = [a for _, a in split], [a for _, a in reg]
    metrics: dict[str, float] = {}
    metrics.update({f"task_{k}": v for k, v in task_metrics(held_answers, held_refs).items()})
    metrics.update({f"heldout_{k}": v for k, v in text_metrics(held_answers, held_refs).items()})
    metrics.update({f"regression_{k}": v for k, v in text_metrics(reg_answers, reg_refs).items()})
    args = (params, loaded.config, loaded.tokenizer, loaded.chat_template)
    metrics["heldout_perplexity"] = perplexity(*args, held_out)
    metrics["regression_perplexity"] = perplexity(*args, regression)
    return {
        "metrics": metrics,
        "per_example_exact": [task.score(a, r)["exact"] for a, r in zip(held_answers, held_refs, strict=True)],
        "heldout_answers": held_answers,
        "regression_answers": reg_answers,
    }


def compare(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, float]:
    """The gate's figures: tuned/base perplexity on the regression set, task gain with its bootstrap interval."""
    b, t = base["metrics"], tuned["metrics"]
    diffs = [x - y for x, y in zip(tuned["per_example_exact"], base["per_example_exact"], strict=True)]
    low, high = bootstrap_ci(diffs)
    return {
        "regression_perplexity_ratio": t["regression_perplexity"] / b["regression_perplexity"],
        "task_exact_gain": t["task_exact"] - b["task_exact"],
        "task_exact_gain_ci_low": low,
        "task_exact_gain_ci_high": high,
    }


def table(base: dict[str, float], tuned: dict[str, float]) -> str:
    """A Markdown table of every metric, base vs tuned."""
    lines = ["| metric | base | tuned | better |", "|---|---:|---:|---|"]
    for key in sorted(base):
        lower_better = "perplexity" in key
        better = tuned[key] < base[key] if lower_better else tuned[key] > base[key]
        lines.append(f"| {key} | {base[key]:.4g} | {tuned[key]:.4g} | {'tuned' if better else '-'} |")
    return "\n".join(lines)
