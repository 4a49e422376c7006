"""Check exercise 3: a different chunking setting, both eval runs recorded, and a conclusion the numbers support.

Re-runs the candidate's evaluation (the embedding model loads offline in a few seconds) to make sure runs.json
came from your config. Usage: check.py [--work DIR].
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, parser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare_chunking import BASELINE, load_config, run  # noqa: E402

PRIMARY = "mrr@10"


def main() -> None:
    """Config, recorded runs, recomputation, conclusion."""
    p = parser(__doc__ or "", HERE / "work")
    p.add_argument("--skip-rerun", action="store_true", help="trust runs.json instead of re-running (fast CI checks)")
    args = p.parse_args()
    report = Report("Exercise 3 - change the chunking and compare eval runs")
    work = args.work.resolve()
    try:
        config = load_config(work / "chunking.yaml")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        report.abort(f"work/chunking.yaml has a valid size and overlap ({exc!r})")
    report.check(
        config != BASELINE,
        f"your setting {config} differs from the baseline {BASELINE}",
        "change size and/or overlap in work/chunking.yaml",
    )
    runs_path = work / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    recorded = runs.get("candidate", {})
    if not report.check(
        recorded.get("config") == config and "baseline" in runs,
        "runs.json holds the baseline run and a run of your current setting",
        f"run: .venv/bin/python exercises/03-rag-chunking/compare_chunking.py {work / 'chunking.yaml'}",
    ):
        report.finish()
    if args.skip_rerun:
        report.info("--skip-rerun: the recorded numbers are not re-computed")
        again = {k: recorded.get(k, 0) for k in ("hit@1", "hit@3", PRIMARY)}
    else:
        from services.rag.embedder import Embedder

        again = run(Embedder(), config)  # only the candidate: the baseline is fixed, its numbers are in runs.json
    same = args.skip_rerun or all(abs(again[k] - recorded.get(k, -1)) < 1e-3 for k in ("hit@1", "hit@3", PRIMARY))
    report.check(
        same,
        f"re-running your setting gives the recorded numbers ({again})",
        "runs.json must be written by compare_chunking.py, not by hand; run it again",
    )
    base, cand = runs["baseline"].get(PRIMARY, 0), again[PRIMARY]
    conclusion = (work / "conclusion.md").read_text().lower() if (work / "conclusion.md").exists() else ""
    said = re.search(r"winner\s*:\s*(baseline|candidate)", conclusion)
    if report.check(bool(said), "conclusion.md names the winner (`winner: baseline` or `winner: candidate`)"):
        right = {"baseline"} if base > cand else {"candidate"} if cand > base else {"baseline", "candidate"}
        report.check(
            said.group(1) in right,
            f"the winner agrees with {PRIMARY}: baseline {base}, candidate {cand}",
            f"the primary metric is {PRIMARY}; higher is better",
        )
    report.check(
        len(conclusion.split()) >= 25,
        "conclusion.md explains why in a few sentences (25+ words)",
        "what changed in the chunks (count, size, context) and what that did to retrieval",
    )
    report.finish()


if __name__ == "__main__":
    main()
