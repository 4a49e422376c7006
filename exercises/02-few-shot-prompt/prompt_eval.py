"""A small prompt evaluation: render a template for each labelled ticket, call the gateway, score the answers.

    .venv/bin/python exercises/02-few-shot-prompt/prompt_eval.py exercises/02-few-shot-prompt/work/prompt.json

Prints accuracy (the first word of the answer equals the label) and format rate (the first word is one of the
labels at all), and writes the per-item results next to the prompt (`<prompt>.results.json`). Calls go through
the gateway with temperature 0, so a run is repeatable on the same model version. With `--mlflow` the run is
also logged to MLflow (experiment `prompt-evals`) so runs of different prompts can be compared side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import http, mlflow_login, platform_env

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "tickets.jsonl"
MODEL = "smollm2-135m-instruct"
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(template: list[dict[str, str]], variables: dict[str, str]) -> list[dict[str, str]]:
    """Fill {{variables}} in every message (the registry's render endpoint does the same server-side)."""
    missing = sorted({v for m in template for v in _VAR.findall(m["content"])} - set(variables))
    if missing:
        raise KeyError(f"missing variables {missing}")
    return [{"role": m["role"], "content": _VAR.sub(lambda x: variables[x.group(1)], m["content"])} for m in template]


def first_word(text: str) -> str:
    """The first word of an answer, lower-cased, punctuation stripped."""
    words = re.findall(r"[a-zA-Z]+", text or "")
    return words[0].lower() if words else ""


def evaluate(prompt: dict[str, Any], gateway: str, key: str) -> dict[str, Any]:
    """Run every ticket through the gateway; returns the summary and the items."""
    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    results = []
    for item in items:
        messages = render(prompt["template"], {"text": item["text"]})
        status, body = http(
            "POST",
            f"{gateway}/v1/chat/completions",
            key,
            {"model": MODEL, "messages": messages, "max_tokens": 4, "temperature": 0},
            timeout=120,
        )
        if status != 200:
            raise SystemExit(f"gateway answered {status}: {body}")
        answer = body["choices"][0]["message"]["content"]
        word = first_word(answer)
        results.append(
            {
                "text": item["text"],
                "label": item["label"],
                "answer": answer,
                "predicted": word,
                "correct": word == item["label"],
                "in_format": word in prompt["labels"],
            }
        )
    n = len(results)
    return {
        "prompt": prompt["name"],
        "template_sha256": hashlib.sha256(json.dumps(prompt["template"], sort_keys=True).encode()).hexdigest(),
        "examples_in_prompt": sum(1 for m in prompt["template"] if m["role"] == "assistant"),
        "model": MODEL,
        "n": n,
        "accuracy": round(sum(r["correct"] for r in results) / n, 3),
        "format_rate": round(sum(r["in_format"] for r in results) / n, 3),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "items": results,
    }


def log_to_mlflow(summary: dict[str, Any], tracking_uri: str) -> str:
    """One MLflow run per evaluation, in the experiment `prompt-evals`."""
    import mlflow

    mlflow_login()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("prompt-evals")
    with mlflow.start_run(run_name=f"{summary['prompt']}-{summary['examples_in_prompt']}shot") as run:
        mlflow.log_params(
            {
                "prompt": summary["prompt"],
                "model": summary["model"],
                "shots": summary["examples_in_prompt"],
                "template_sha256": summary["template_sha256"][:16],
            }
        )
        mlflow.log_metrics({"accuracy": summary["accuracy"], "format_rate": summary["format_rate"]})
        mlflow.log_dict(summary, "prompt_eval.json")
        return run.info.run_id


def main() -> None:
    """CLI."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", type=Path, help="prompt JSON file (name, labels, template)")
    p.add_argument("--mlflow", action="store_true", help="also log the run to MLflow (LLMOPS_MLFLOW_URL)")
    args = p.parse_args()
    env = platform_env()
    prompt = json.loads(args.prompt.read_text())
    summary = evaluate(prompt, env.get("LLMOPS_GATEWAY_URL", "http://127.0.0.1:8000"), env.get("LLMOPS_API_KEY", ""))
    out = args.prompt.with_suffix(".results.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "items"}))
    if args.mlflow:
        print("mlflow run:", log_to_mlflow(summary, env.get("LLMOPS_MLFLOW_URL", "http://127.0.0.1:5000")))


if __name__ == "__main__":
    main()
