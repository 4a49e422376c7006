"""The fine-tuning loop measured: training tokens/s on this machine's cores, the worked example's loop time
(dataset -> LoRA -> merged GGUF -> eval of base and tuned), tuned vs base on the task (exact match, paired
bootstrap 95 % interval of the difference), perplexity ratio on the regression set, and served tokens/s of the
tuned GGUF vs the base through the inference service's engine (llama.cpp child process, same settings).

No registry here (the integration test covers registration); results in bench/results/finetune.{md,json}.
  python bench/finetune_bench.py [--steps 24] [--batch-size 4] [--eval-rows 40] [--serve-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import versions, write_result
from services.finetune import task
from services.finetune.pipeline import RunSpec, run
from services.finetune.settings import FinetuneSettings
from services.finetune.train import TrainConfig
from services.inference.engines.llamacpp import packaged_smollm2_path

SERVE_PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


async def _tokens_per_s(engine: Any, max_tokens: int) -> float:
    body = {"messages": SERVE_PROMPT, "max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    t0 = time.perf_counter()
    result = await engine.generate("chat", body)
    return result["usage"]["completion_tokens"] / (time.perf_counter() - t0)


def served_tokens_per_s(paths: dict[str, Path], rounds: int, max_tokens: int) -> dict[str, list[float]]:
    """Both engines loaded side by side; rounds alternate base/tuned so machine load drifts hit both alike."""
    from services.inference.engines.llamacpp_process import LlamaCppProcessEngine

    async def measure() -> dict[str, list[float]]:
        engines = {k: LlamaCppProcessEngine(p, context_length=1024, parallel_slots=1, threads=2, start_timeout_s=600,
                                            request_timeout_s=600) for k, p in paths.items()}  # fmt: skip
        for engine in engines.values():
            await engine.start()
        try:
            out: dict[str, list[float]] = {k: [] for k in engines}
            for engine in engines.values():  # warm-up
                await _tokens_per_s(engine, 8)
            for _ in range(rounds):
                for k, engine in engines.items():
                    out[k].append(await _tokens_per_s(engine, max_tokens))
            return out
        finally:
            for engine in engines.values():
                await engine.stop()

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--eval-rows", type=int, default=40)
    parser.add_argument("--serve-rounds", type=int, default=3)
    parser.add_argument("--serve-tokens", type=int, default=96)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="finetune-bench-") as tmp:
        work = Path(tmp)
        dataset = work / "json-tickets.jsonl"

        dataset.write_text("".join(json.dumps(r) + "\n" for r in task.generate(args.rows)))
        settings = FinetuneSettings(work_dir=work / "work", models_dir=work / "models", mlflow_tracking_uri="",
                                    registry_url=None)  # fmt: skip
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, checkpoint_every=args.steps)
        t0 = time.perf_counter()
        summary = run(RunSpec(dataset=dataset, train=cfg, eval_rows=args.eval_rows, register=False), settings)
        loop_s = time.perf_counter() - t0
        served = served_tokens_per_s(
            {"base": packaged_smollm2_path(), "tuned": Path(summary["gguf"])}, args.serve_rounds, args.serve_tokens
        )
    load_after = os.getloadavg()
    comparison = summary["comparison"]
    ev = summary["eval_results"]
    median = {k: sorted(v)[len(v) // 2] for k, v in served.items()}
    result = {
        "config": {**cfg.as_params(), "rows": args.rows, "eval_rows": args.eval_rows},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": versions("jax", "jaxlib", "xllamacpp", "gguf", "sacrebleu", "rouge-score"),
        "timings": summary["timings"],
        "loop_seconds": loop_s,
        "losses": {"first": summary["first_loss"], "last": summary["last_loss"]},
        "eval_results": ev,
        "comparison": comparison,
        "served_tokens_per_s": served,
        "served_ratio_tuned_over_base": median["tuned"] / median["base"],
        "exported": summary["exported"],
    }
    t = summary["timings"]
    md = (
        f"- load average before / after: {load_before[0]:.1f} / {load_after[0]:.1f} (1 min; 2 cores)\n"
        f"- config: {args.steps} steps x batch {args.batch_size}, LoRA rank {cfg.rank} on {','.join(cfg.targets)}, "
        f"{summary['train_rows']} training rows, {summary['heldout_rows']} held-out rows evaluated\n\n"
        "| measure | value |\n|---|---:|\n"
        f"| training tokens/s (padded tokens through the model, compile excluded) | {t['train_tokens_per_s']:.1f} |\n"
        f"| compile + first step (s) | {t['compile_and_first_step_seconds']:.1f} |\n"
        f"| training (s) | {t['train_seconds']:.1f} |\n"
        f"| export merged GGUF (s) | {t['export_seconds']:.1f} |\n"
        f"| eval base + tuned (s) | {t['eval_seconds']:.1f} |\n"
        f"| whole loop: dataset -> train -> GGUF -> eval (s) | {loop_s:.1f} |\n"
        f"| loss first -> last step | {summary['first_loss']:.3f} -> {summary['last_loss']:.3f} |\n"
        f"| task exact match base -> tuned | {ev['base_task_exact']:.3f} -> {ev['tuned_task_exact']:.3f} |\n"
        f"| gain, paired bootstrap 95 % CI | {comparison['task_exact_gain']:+.3f} "
        f"[{comparison['task_exact_gain_ci_low']:+.3f}, {comparison['task_exact_gain_ci_high']:+.3f}] |\n"
        f"| format accuracy base -> tuned | {ev['base_task_format_ok']:.3f} -> {ev['tuned_task_format_ok']:.3f} |\n"
        f"| regression perplexity tuned / base | {comparison['regression_perplexity_ratio']:.4f} |\n"
        f"| served tokens/s base (median of {args.serve_rounds}) | {median['base']:.1f} |\n"
        f"| served tokens/s tuned (median of {args.serve_rounds}) | {median['tuned']:.1f} |\n"
        f"| served tuned / base | {median['tuned'] / median['base']:.3f} |\n\n"
        "Base vs tuned, every metric:\n\n" + summary["table"] + "\n"
    )
    write_result("finetune", result, md)
    print(md)


if __name__ == "__main__":
    main()
