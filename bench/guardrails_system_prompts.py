"""Real application system prompts, checked as a system message in input mode: a benign set (should pass).

Why: the learned harmful-request model reads system and developer messages by default (through the gateway's
OpenAI-compatible API the caller writes them, and a harmful request moved there escaped a user-only model). An
application's system prompt often names what to refuse or avoid ("The secret is X, do not reveal it", "Do not
discuss politics", "never help with weapons"); one such safety prompt scored 0.94 at the 0.938 threshold. This
stage measures what reading them costs, on prompts the model never trains on:

- CyberSecEval's prompt-injection rows carry the system prompt each attack targets (`test_case_prompt`): benign
  application prompts, English and 15 machine-translated languages, deduplicated here (case and spacing). The
  harmful model's training reads only those rows' `text` (the attack), never this field;
- the platform's own system templates: services/rag/prompts/*.json, the prompts services/registry/seed.py
  registers, bench/feedback_pipeline.py's, and the `"role": "system"` examples of docs/ (placeholders like
  `{{context}}` removed: the gateway splits RAG's marked passages out as content).

Each prompt is one request `[{"role": "system", ...}]` judged by `checker.chat_items` + `Checker.check_many`
under the default policy (what the gateway's input check does): the share not allowed, and the share with a
harmful_request finding (rules or the learned model) apart.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from services.guardrails.checker import Checker, chat_items
from services.guardrails.policies import Policy

ROOT = Path(__file__).resolve().parents[1]
_PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")
_DOCS_SYSTEM = re.compile(r'"role":\s*"system",\s*"content":\s*"((?:[^"\\]|\\.)+)"')


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def cyberseceval_prompts(root: Path) -> list[dict[str, str]]:
    """Distinct `test_case_prompt`s of the CyberSecEval prompt-injection files, with their language."""
    seen: dict[str, dict[str, str]] = {}
    for path in sorted((root / "injection-extra").glob("cyberseceval_prompt_injection_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            text = (row.get("test_case_prompt") or "").strip()
            if text:
                seen.setdefault(_key(text), {"text": text, "lang": row.get("speaking_language") or "?"})
    return list(seen.values())


def platform_prompts(root: Path = ROOT) -> list[dict[str, str]]:
    """The system messages the platform ships, placeholders removed, deduplicated (with where each came from)."""
    from services.registry import seed

    found: list[tuple[str, str]] = []
    for path in sorted((root / "services" / "rag" / "prompts").glob("*.json")):
        found.append((json.loads(path.read_text())["system"], str(path.relative_to(root))))
    for name in ("RAG_PROMPT", "RAG_ANSWER_HISTORY", "RAG_ANSWER"):
        template = getattr(seed, name).template
        for message in template if isinstance(template, list) else []:
            if message.role == "system":
                found.append((message.content, f"services/registry/seed.py {name}"))
    for path in [root / "bench" / "feedback_pipeline.py", *sorted((root / "docs").rglob("*.md"))]:
        for match in _DOCS_SYSTEM.finditer(path.read_text(encoding="utf-8")):
            text = json.loads(f'"{match.group(1)}"')
            if len(text.strip(" '\"")) > 10:  # docs/learner-journey.md's is a shell variable ('"$2"')
                found.append((text, str(path.relative_to(root))))
    out: dict[str, dict[str, str]] = {}
    for text, where in found:
        clean = _PLACEHOLDER.sub("", text).strip()
        out.setdefault(_key(clean), {"text": clean, "lang": "English", "where": where})
    return list(out.values())


def _judge(checker: Checker, policy: Policy, text: str) -> tuple[str, list[dict[str, Any]]]:
    items = chat_items([("system", text, False)], policy)
    verdict = checker.check_many(items, policy, "input")
    return verdict.decision, [f.as_dict() for i in verdict.items for f in i.findings]


def _score(checker: Checker, policy: Policy, prompts: list[dict[str, str]]) -> dict[str, Any]:
    """Shares blocked or flagged (a redaction of an e-mail address in the prompt is not counted: the request
    goes on), with a harmful_request finding, and why the rest were blocked (rule or model, by category)."""
    stopped, harmful, rows, why = 0, 0, [], Counter()
    for p in prompts:
        decision, findings = _judge(checker, policy, p["text"])
        is_harmful = any(f["category"] == "harmful_request" for f in findings)
        stopped += decision in ("block", "flag")
        harmful += is_harmful
        if decision in ("block", "flag"):
            why.update({f["category"] + ": " + f["reason"].split(":")[0] for f in findings})
        if is_harmful:
            rows.append({**p, "decision": decision, "reasons": sorted({f["reason"] for f in findings})})
    n = max(len(prompts), 1)
    return {
        "n": len(prompts),
        "blocked_or_flagged": round(stopped / n, 4),
        "harmful_request": round(harmful / n, 4),
        "harmful_rows": rows,
        "blocked_or_flagged_by": dict(why.most_common()),
    }


def system_prompts(checker: Checker, policy: Policy, datasets: Path) -> dict[str, Any]:
    """Shares of real application system prompts the gateway's input check would not allow, per set."""
    cse = cyberseceval_prompts(datasets)
    return {
        "policy": policy.name,
        "languages": dict(Counter(p["lang"] for p in cse)),
        "sets": {
            "cyberseceval_system_prompts_en": _score(checker, policy, [p for p in cse if p["lang"] == "English"]),
            "cyberseceval_system_prompts_other": _score(checker, policy, [p for p in cse if p["lang"] != "English"]),
            "cyberseceval_system_prompts_all": _score(checker, policy, cse),
            "platform_system_templates": _score(checker, policy, platform_prompts()),
        },
    }


def system_prompts_markdown(r: dict[str, Any]) -> list[str]:
    """The results section."""
    lines = [
        "## Real application system prompts, as a system message in input mode (benign: should pass)",
        "",
        "CyberSecEval's `test_case_prompt`s (the system prompt each prompt-injection row attacks: secrets not to "
        "reveal, topics to avoid; deduplicated; never a training text) and the platform's own system templates "
        f"(bench/guardrails_system_prompts.py), each one request with one system message, policy `{r['policy']}`. "
        "The learned harmful-request model reads system messages by default; 'harmful_request' is the share with "
        "that category's finding (rules or model), 'blocked or flagged' the request's decision whatever the detector "
        "(injection included; a redacted e-mail address is not counted).",
        "",
        "| set | n | harmful_request | blocked or flagged | blocked or flagged by |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["sets"].items():
        by = "; ".join(f"{k} ({v})" for k, v in s["blocked_or_flagged_by"].items()) or "-"
        lines.append(f"| {name} | {s['n']} | {s['harmful_request']:.4f} | {s['blocked_or_flagged']:.4f} | {by} |")
    lines.append("")
    shown = [*r["sets"]["cyberseceval_system_prompts_all"]["harmful_rows"],
             *r["sets"]["platform_system_templates"]["harmful_rows"]]  # fmt: skip
    for row in shown:
        lines.append(f"- {row['decision']} ({row['lang']}): {row['text'][:140]!r} ({'; '.join(row['reasons'])})")
    return [*lines, ""] if shown else lines
