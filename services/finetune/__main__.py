"""CLI: `python -m services.finetune data|run` (make finetune runs both for the worked example).

data   write the worked example's dataset (support tickets -> strict JSON), deterministic, chat JSONL;
       --replay N adds N general rows answered by the base model itself (replay.py: keeps the rest while tuning)
run    fine-tune on a chat JSONL (a feedback export or `data`'s file), evaluate base vs tuned, log the MLflow
       run, register the merged GGUF as a new version (with FINETUNE_REGISTRY_URL and a member's token)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.finetune import task
from services.finetune.settings import FinetuneSettings
from services.finetune.train import TrainConfig

DEFAULT_DATASET = Path(".llmops/data/finetune/datasets/json-tickets.jsonl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write the worked example's dataset")
    data.add_argument("--out", type=Path, default=DEFAULT_DATASET)
    data.add_argument("--rows", type=int, default=240)
    data.add_argument("--seed", type=int, default=18)
    data.add_argument(
        "--replay",
        type=int,
        default=0,
        help="also N general prompts (Self-Instruct) with the base model's own answers (sampled, seeded), generated "
        "once by llama.cpp and cached under FINETUNE_WORK_DIR/replay; they always train, never count as held out",
    )
    data.add_argument(
        "--replay-complete-only",
        action="store_true",
        help="only replay answers that ended within their 64-token budget (a cut one, trained as a prefix, was "
        "measured to unlearn stopping: the regression answers' <|im_end|> got less likely)",
    )

    run = sub.add_parser("run", help="train, evaluate, register")
    run.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="chat JSONL ({'messages': [...]})")
    run.add_argument("--dataset-ref", help="name:version of the registered export this file is (sha256 checked)")
    defaults = TrainConfig()
    run.add_argument("--steps", type=int, default=defaults.steps)
    run.add_argument("--batch-size", type=int, default=defaults.batch_size)
    run.add_argument("--lr", type=float, default=defaults.lr)
    run.add_argument("--rank", type=int, default=defaults.rank)
    run.add_argument("--alpha", type=float, default=defaults.alpha)
    run.add_argument("--targets", default=",".join(defaults.targets), help="adapted matrices: q,k,v,o,gate,up,down")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    run.add_argument("--eval-rows", type=int, default=40, help="held-out rows evaluated")
    run.add_argument("--merge-quant", default="F16", help="type of the adapted tensors: F16 (default), Q8_0, same")
    run.add_argument("--no-register", action="store_true", help="do not register even with FINETUNE_REGISTRY_URL")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.command == "data":
        rows = task.generate(args.rows, args.seed)
        replayed = _replay_rows(args.replay, args.seed, args.replay_complete_only) if args.replay else []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows + replayed))
        from services.finetune.gguf_io import file_sha256

        facts = {"path": str(args.out), "rows": len(rows) + len(replayed), "task_rows": len(rows)}
        print(json.dumps({**facts, "replay_rows": len(replayed), "sha256": file_sha256(args.out)}))
        return 0

    from services.finetune.pipeline import RunSpec
    from services.finetune.pipeline import run as run_pipeline

    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        rank=args.rank,
        alpha=args.alpha,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    spec = RunSpec(
        dataset=args.dataset,
        train=cfg,
        dataset_ref=args.dataset_ref,
        eval_rows=args.eval_rows,
        merge_quant=args.merge_quant,
        register=not args.no_register,
    )
    summary = run_pipeline(spec, FinetuneSettings(), progress=not args.quiet)
    print(summary.pop("table"))
    print(json.dumps(summary, indent=2))
    return 0


def _replay_rows(n: int, seed: int, complete_only: bool) -> list[dict]:
    """Replay rows answered by the shipped base GGUF; the regression set's prompts are excluded (no leak)."""
    from services.finetune import replay
    from services.finetune.pipeline import REGRESSION_SET, read_rows
    from services.inference.registry_source import resolve_artifact

    settings = FinetuneSettings()
    regression = [m["content"] for r in read_rows(REGRESSION_SET) for m in r["messages"]]
    base = resolve_artifact(settings.base_artifact_uri)
    work = settings.work_dir / "replay"
    return replay.build(n, seed, work, base, settings.base_artifact_uri, regression, complete_only=complete_only)


if __name__ == "__main__":
    sys.exit(main())
