"""Base vs tuned, on what is served: answers come from llama.cpp running each GGUF (the inference service's
engine), perplexity from the JAX forward on the weights read back from the same GGUF files.

Metrics: perplexity of the reference answers (lower is better; only comparable with the same tokenizer),
BLEU (sacrebleu, corpus level) and ROUGE-L F1 (rouge-score) against the references, and for the worked task
format accuracy (strict JSON with the right keys and types) and exact match (every field right), and, with a
guardrails service, the share of answers its output check flags (`POST /v1/check/output`: leaks, deny-lists,
secrets): a tune must not teach the model to say what the platform would stop.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np

from services.finetune import chat, task

TASK_TOKEN_MARGIN = 16
EVAL_VERSION = 3  # part of the base evaluation's cache key: bump when how answers are generated changes


def task_max_tokens(tokenizer: Any, references: list[str]) -> int:
    """The generation budget of a task with short exact answers: its longest reference's tokens plus a margin."""
    return max(len(tokenizer.encode(r, add_special_tokens=False).ids) for r in references) + TASK_TOKEN_MARGIN


def engine_answers(
    gguf: Path, prompts: list[list[dict[str, str]]], max_tokens: int | list[int], threads: int = 2, slots: int = 4
) -> list[str]:
    """Greedy answers of llama.cpp for each prompt (see engine_generate)."""
    return [text for text, _ in engine_generate(gguf, prompts, max_tokens, threads, slots)]


def engine_generate(
    gguf: Path,
    prompts: list[list[dict[str, str]]],
    max_tokens: int | list[int],
    threads: int = 2,
    slots: int = 4,
    sampling: dict[str, float] | None = None,
) -> list[tuple[str, bool]]:
    """(answer, cut by its token budget) of llama.cpp for each prompt, greedy (or `sampling`'s settings, seeded),
    from the inference service's own engine: a llama.cpp child process (engines/llamacpp_process.py, with its
    OpenMP settings) serving `gguf` exactly as a version is served."""
    from services.inference.engines.llamacpp_process import LlamaCppProcessEngine

    budgets = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)

    engine = LlamaCppProcessEngine(
        gguf, context_length=1024, parallel_slots=slots, threads=threads, start_timeout_s=600, request_timeout_s=600
    )

    async def answer_all() -> list[tuple[str, bool]]:
        await engine.start()
        try:
            gate = asyncio.Semaphore(slots)

            async def ask(messages: list[dict[str, str]], budget: int) -> tuple[str, bool]:
                async with gate:
                    body = {
                        "messages": messages,
                        "max_tokens": budget,
                        "temperature": 0.0,
                        "seed": 0,
                        **(sampling or {}),
                    }
                    result = await engine.generate("chat", body)
                    cut = int(result.get("usage", {}).get("completion_tokens", 0)) >= budget
                    return str(result["choices"][0]["message"].get("content") or ""), cut

            return list(await asyncio.gather(*(ask(m, b) for m, b in zip(prompts, budgets, strict=True))))
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


def task_scores(answers: list[str], references: list[str], cut: list[bool] | None = None) -> list[dict[str, float]]:
    """task.score of each answer; an answer cut by its token budget scores 0: the model had not stopped, so it
    was not answering with the JSON object only (whatever the cut-off text happens to parse as)."""
    cut = cut or [False] * len(answers)
    zero = {"format_ok": 0.0, "exact": 0.0, "fields": 0.0}
    return [zero if c else task.score(a, r) for a, r, c in zip(answers, references, cut, strict=True)]


def task_metrics(answers: list[str], references: list[str], cut: list[bool] | None = None) -> dict[str, float]:
    scores = task_scores(answers, references, cut)
    return {k: float(np.mean([s[k] for s in scores])) for k in ("format_ok", "exact", "fields")}


def guardrails_flags(answers: list[str], prompts: list[str], http: Any, policy: str | None = None) -> list[str]:
    """The guardrails service's decision on each answer (`allow`, `flag`, `redact`, `block`), from its real output
    check: `http` is a llmops_common.http.BlockingHTTP with the service's base URL and token (or a TestClient of
    its app)."""
    decisions = []
    for answer, prompt in zip(answers, prompts, strict=True):
        body: dict[str, Any] = {"text": answer or " ", "prompt": prompt}
        if policy:
            body["policy"] = policy
        resp = http.post("/v1/check/output", json=body)
        resp.raise_for_status()
        decisions.append(str(resp.json()["decision"]))
    return decisions


def guardrails_metrics(
    result: dict[str, Any], held_prompts: list[str], reg_prompts: list[str], http: Any, policy: str | None = None
) -> None:
    """Add `heldout_flagged` / `regression_flagged` (share of answers not allowed as they are) to `result`'s
    metrics, from its stored answers, so a cached base evaluation gets them too; decisions kept beside them."""
    for split, prompts in (("heldout", held_prompts), ("regression", reg_prompts)):
        decisions = guardrails_flags(result[f"{split}_answers"], prompts, http, policy)
        result[f"{split}_guardrails"] = decisions
        result["metrics"][f"{split}_flagged"] = float(np.mean([d != "allow" for d in decisions])) if decisions else 0.0


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
    loaded = gguf_io.load(gguf)
    held_refs, reg_refs = [a for _, a in split], [a for _, a in reg]
    # One engine start for both sets; the held-out task's answers need no more tokens than its longest reference
    # plus a margin: an answer that reaches that budget had not stopped, so it is not the JSON object alone and
    # scores 0 (task_scores) as it would have at any budget; the base model's rambling was most of the generation.
    held_cap = min(max_tokens, task_max_tokens(loaded.tokenizer, held_refs))
    generated = engine_generate(
        gguf, [p for p, _ in split] + [p for p, _ in reg], [held_cap] * len(split) + [max_tokens] * len(reg)
    )
    answers = [text for text, _ in generated]
    held_cut = [cut for _, cut in generated[: len(split)]]
    held_answers, reg_answers = answers[: len(split)], answers[len(split) :]
    params = M.to_device(loaded.weights)
    metrics: dict[str, float] = {}
    metrics.update({f"task_{k}": v for k, v in task_metrics(held_answers, held_refs, held_cut).items()})
    metrics.update({f"heldout_{k}": v for k, v in text_metrics(held_answers, held_refs).items()})
    metrics.update({f"regression_{k}": v for k, v in text_metrics(reg_answers, reg_refs).items()})
    args = (params, loaded.config, loaded.tokenizer, loaded.chat_template)
    metrics["heldout_perplexity"] = perplexity(*args, held_out)
    metrics["regression_perplexity"] = perplexity(*args, regression)
    return {
        "metrics": metrics,
        "per_example_exact": [s["exact"] for s in task_scores(held_answers, held_refs, held_cut)],
        "heldout_cut": held_cut,
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
    for key in sorted(set(base) & set(tuned)):
        lower_better = "perplexity" in key or key.endswith("_flagged")
        better = tuned[key] < base[key] if lower_better else tuned[key] > base[key]
        lines.append(f"| {key} | {base[key]:.4g} | {tuned[key]:.4g} | {'tuned' if better else '-'} |")
    return "\n".join(lines)
