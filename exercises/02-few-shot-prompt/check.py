"""Check exercise 2: a few-shot prompt template in work/prompt.json, evaluated with prompt_eval.py.

Offline: the template's structure (labels, {{text}}, worked examples covering the labels) and that
work/prompt.results.json was produced from this exact template. `--live` also re-runs the evaluation through
the gateway (needs `make up`). Usage: check.py [--work DIR] [--live].
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, parser, platform_env, reachable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from prompt_eval import DATA, evaluate, first_word, render  # noqa: E402

MIN_FORMAT_RATE = 0.75


def main() -> None:
    """Structure of the template, then its evaluation results."""
    p = parser(__doc__ or "", HERE / "work")
    p.add_argument("--live", action="store_true", help="re-run the evaluation through the gateway")
    args = p.parse_args()
    report = Report("Exercise 2 - a few-shot prompt, evaluated")
    path = args.work.resolve() / "prompt.json"
    if not report.check(path.exists(), f"{path} exists"):
        report.finish()
    try:
        prompt = json.loads(path.read_text())
        template, labels = prompt["template"], [str(x).lower() for x in prompt["labels"]]
    except (ValueError, KeyError, TypeError) as exc:
        report.abort(f"prompt.json has name, labels and template ({exc!r})")
    roles = [m.get("role") for m in template]
    report.check(roles[:1] == ["system"], "the template starts with a system message (the instruction)")
    system = template[0].get("content", "").lower() if template else ""
    report.check(
        all(label in system for label in labels),
        f"the instruction names every label {labels}",
        "a small model only answers in format when told the exact words to use",
    )
    report.check(
        bool(template) and template[-1].get("role") == "user" and "{{text}}" in template[-1].get("content", ""),
        "the last message is the user's turn with the {{text}} variable",
    )
    shots = [
        (template[i], template[i + 1])
        for i in range(1, len(template) - 2)
        if template[i].get("role") == "user" and template[i + 1].get("role") == "assistant"
    ]
    report.check(
        len(shots) >= 2,
        f"{len(shots)} worked examples (user/assistant pairs) before the question (need 2+)",
        "few-shot = show the model solved examples in the conversation itself",
    )
    shown = {first_word(a.get("content", "")) for _, a in shots}
    report.check(
        shown <= set(labels) and len(shown) >= 2,
        f"the examples answer with labels only, covering 2+ of them ({sorted(shown)})",
    )
    tickets = {json.loads(line)["text"] for line in DATA.read_text().splitlines() if line.strip()}
    leaked = [u.get("content") for u, _ in shots if u.get("content") in tickets]
    report.check(not leaked, "no example is copied from the evaluation data", f"these are test items: {leaked}")
    try:
        render(template, {"text": "hello"})
        report.ok("the template renders with only {{text}}")
    except KeyError as exc:
        report.fail(f"the template renders with only {{{{text}}}} ({exc})")
    sha = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    results_path = path.with_suffix(".results.json")
    results = json.loads(results_path.read_text()) if results_path.exists() else None
    fresh = bool(results) and results.get("template_sha256") == sha
    if report.check(
        fresh,
        f"{results_path.name} holds an evaluation of this exact template",
        f"run: .venv/bin/python exercises/02-few-shot-prompt/prompt_eval.py {path}  (needs make up)",
    ):
        report.info(
            f"your run: accuracy {results['accuracy']}, format rate {results['format_rate']} on {results['n']} tickets"
        )
        report.check(
            results["format_rate"] >= MIN_FORMAT_RATE,
            f"format rate >= {MIN_FORMAT_RATE}",
            "answers that are not a label cannot be parsed: make the examples and instruction stricter",
        )
    if args.live:
        env = platform_env()
        gateway = env.get("LLMOPS_GATEWAY_URL", "http://127.0.0.1:8000")
        if report.check(reachable(gateway + "/readyz"), f"the gateway answers at {gateway}", "make up"):
            live = evaluate(prompt, gateway, env.get("LLMOPS_API_KEY", ""))
            report.check(
                live["format_rate"] >= MIN_FORMAT_RATE,
                f"live run: accuracy {live['accuracy']}, format rate {live['format_rate']} (need >= {MIN_FORMAT_RATE})",
            )
    report.finish()


if __name__ == "__main__":
    main()
