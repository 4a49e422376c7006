"""Thresholds from out-of-source scores, and the leave-one-source-out report (training and bench share it).

Method: every example gets the score of the model trained without its source (`fit.loso`). A mode's
threshold is the lowest score at which every benign training source (documents only, in content mode)
has at most `MAX_SHARE` (content mode: half of it) of its texts flagged by the model (`MAX_FPR` for the
benign rows of attack sets), with at most `MAX_FPR` over all of them. For
the report on a held-out source, the threshold is chosen the same way *without* that source's scores, so
no figure comes from a threshold that saw the data it is measured on. The Enron e-mails (non-commercial
licence) are never trained on and never used to choose a threshold: they are only measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.guardrails.detectors.harmful_rules import find_harmful
from services.guardrails.detectors.injection_rules import RULES, match_rules
from services.guardrails.detectors.normalize import decode_payloads, unicode_view, views
from services.guardrails.training.data import PLANTED, Example
from services.guardrails.training.fit import CONTENT_EVAL_SOURCES, CONTENT_ONLY_BENIGN_SOURCES, MODES
from services.guardrails.training.system_prompts import SOURCE as SYSTEM_PROMPTS_SOURCE

MAX_SHARE = 0.01  # benign share flagged per source (input mode)
# Content mode aims at half that on the sources it calibrates on, so that a document genre it has never seen
# stays under 1 %. Measured, held out: a held-out benign source is flagged at about twice the share the
# threshold was set for (XQuAD's paragraphs in 12 languages, held out: 2.7 % at the 1 % rule, 0.9 % at
# 0.5 %; held-out recall of the content model moved by under 1 point). Chosen after seeing that XQuAD
# figure, so the XQuAD row is not a blind measurement of this rule; the documentation rows and the man pages
# are (they passed at both). Input mode keeps 1 %: its benign sets are far below it held out, and a higher
# input threshold costs jailbreak recall.
MAX_SHARE_BY_MODE = {"input": MAX_SHARE, "content": 0.005}
MAX_FPR = 0.02  # over all benign sources together, and on the benign rows of an attack data set
# Benign rows of attack data sets (role-play prompts, advice questions) are hard negatives: the target for
# them is the FPR of the attack set (2 %); the plain benign sets (e-mails, intents, paragraphs) get 1 %.
ATTACK_SET_SOURCES = frozenset({"llm-warden", "forbidden-questions", "injecagent", "spikee"})


def harmful_hit(text: str) -> bool:
    """Whether the harmful-request rules fire (the detector runs them in input mode only, on the canonical view)."""
    return find_harmful(unicode_view(text).text) is not None


def rule_hit(text: str) -> bool:
    """Whether any rule fires on any normalised view or decoded payload (what the detector's rules do)."""
    for view in views(text):
        if match_rules(view.text, RULES):
            return True
    return any(match_rules(v.text, RULES) for p in decode_payloads(text) for v in views(p.text))


def _benign_for_threshold(ex: Example, mode: str) -> bool:
    if ex.label != 0 or not ex.trainable:
        return False
    if ex.source == SYSTEM_PROMPTS_SOURCE:
        # A few dozen hand-written hard negatives: taught, not calibrated on (the thresholds stay set by the
        # real benign sets; the bench's system_prompts stage measures the genre on prompts never trained on).
        return False
    if mode == "input":
        return ex.source not in CONTENT_ONLY_BENIGN_SOURCES  # calibrated on what the input model learned from
    return ex.mode == "content"


def choose_threshold(
    examples: list[Example],
    scores: np.ndarray,
    mode: str,
    exclude: str | None = None,
    max_share: float | None = None,
    max_fpr: float = MAX_FPR,
) -> float:
    """Lowest threshold meeting MAX_SHARE per benign source and MAX_FPR overall (on out-of-source scores);
    `max_share` / `max_fpr` override the mode's (the harmful-request model's stricter rule)."""
    share = MAX_SHARE_BY_MODE[mode] if max_share is None else max_share
    by_source: dict[str, list[float]] = {}
    for ex, s in zip(examples, scores, strict=True):
        if ex.source != exclude and _benign_for_threshold(ex, mode) and not np.isnan(s):
            by_source.setdefault(ex.source, []).append(float(s))
    candidates = [
        float(np.quantile(v, 1 - (max_fpr if name in ATTACK_SET_SOURCES else share), method="higher"))
        for name, v in by_source.items()
    ]
    pooled = np.concatenate([np.asarray(v) for v in by_source.values()])
    candidates.append(float(np.quantile(pooled, 1 - max_fpr, method="higher")))
    return min(max(candidates) + 1e-6, 0.999)


def _group(ex: Example) -> str:
    return "en" if ex.lang == "en" else "non-en"


def loso_report(
    examples: list[Example],
    oof: dict[str, np.ndarray],
    rules: np.ndarray | dict[str, np.ndarray],
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per held-out source, mode and language group: recall (attacks) or share flagged (benign), with the
    model alone and with rules OR model (what the service does). `rules`: one hit array for both modes, or one
    per mode (the harmful-request rules run in input mode only). `extra`: a peer's scores (0..1, 0.5 cut)."""
    per_mode = rules if isinstance(rules, dict) else dict.fromkeys(MODES, rules)
    report: dict[str, Any] = {}
    src = np.array([ex.source for ex in examples])
    for name in dict.fromkeys(src.tolist()):
        if name == PLANTED:
            continue  # synthetic training data, not a source to report
        held = src == name
        entry: dict[str, Any] = {}
        for mode in MODES:
            if mode == "content" and name not in CONTENT_EVAL_SOURCES:
                continue
            scores, rules = oof[mode], per_mode[mode]
            threshold = choose_threshold(examples, scores, mode, exclude=name)
            rows: dict[str, Any] = {"threshold": round(threshold, 4)}
            for label in (1, 0):
                for group in ("en", "non-en", "all"):
                    mask = held & np.array([ex.label == label and group in ("all", _group(ex)) for ex in examples])
                    if not mask.any():
                        continue
                    model = scores[mask] >= threshold
                    key = ("recall" if label else "flagged") + f"_{group}"
                    rows[key] = {
                        "n": int(mask.sum()),
                        "model": round(float(model.mean()), 4),
                        "rules_or_model": round(float((model | rules[mask]).mean()), 4),
                        "rules": round(float(rules[mask].mean()), 4),
                    }
                    for peer, peer_scores in (extra or {}).items():
                        rows[key][peer] = round(float((peer_scores[mask] >= 0.5).mean()), 4)
            entry[mode] = rows
        report[name] = entry
    return report


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (source, mode, measure, group, n, figures) for tables."""
    out = []
    for source, modes in report.items():
        for mode, rows in modes.items():
            for key, value in rows.items():
                if key == "threshold":
                    continue
                measure, group = key.split("_", 1)
                out.append({"source": source, "mode": mode, "measure": measure, "group": group,
                            "threshold": rows["threshold"], **value})  # fmt: skip
    return out
