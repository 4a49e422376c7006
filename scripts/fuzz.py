"""`make fuzz`: the long fuzz run. Every operation of every service's committed OpenAPI document, as each of its
callers, EXAMPLES cases each (schemathesis; phases examples, coverage, fuzzing; fixed SEED), against private
services (tests/fuzz/targets.py). Writes bench/results/fuzz.md and fuzz.json: operations covered, failures, and the
lenient-typing findings that are not counted as failures. Exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from tests.fuzz.runner import FuzzResult, run_schemathesis, schemathesis_cli  # noqa: E402
from tests.fuzz.targets import SERVICES, fuzz_platform  # noqa: E402


def _version() -> str:
    cli = schemathesis_cli()
    return subprocess.run([cli, "--version"], capture_output=True, text=True).stdout.strip() if cli else "absent"


def _markdown(results: list[FuzzResult], meta: dict) -> str:
    lines = [
        "# API fuzzing (`make fuzz`)",
        "",
        f"- date: {meta['date']}; machine: {meta['machine']}; load average at start: {meta['load']}",
        f"- {meta['schemathesis']}; {meta['examples']} cases per operation, seed {meta['seed']}, "
        f"phases {meta['phases']}; {meta['seconds']:.0f} s in all",
        f"- command: `{meta['command']}`",
        "- checks: not_a_server_error, response_schema_conformance, status_code_conformance, "
        "content_type_conformance, negative_data_rejection, max response time 30 s",
        "",
        "| service | caller | operations | failing | lenient typing only |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.service} | {r.caller} | {len(r.operations)} | {len(r.failures)} | {len(r.lenient)} |")
    total = sum(len(r.operations) for r in results)
    failing = sum(len(r.failures) for r in results)
    lines += ["", f"**{total} operation runs, {failing} failing.**", ""]
    for r in results:
        for op, findings in sorted(r.findings().items()):
            lines.append(f"- FAIL {r.service}/{r.caller} `{op}`: {'; '.join(sorted(findings))}")
    lines += ["", "## Operations covered", ""]
    for r in results:
        lines.append(f"- {r.service} as {r.caller}: " + ", ".join(f"`{op}`" for op in sorted(r.operations)))
    lenient = [(r, op) for r in results for op in sorted(r.lenient)]
    if lenient:
        lines += [
            "",
            "## Lenient typing (not failures)",
            "",
            "Values of the wrong JSON type that pydantic's lax mode converts (`0`/`1` for a boolean, `false` for an",
            "integer) are accepted; see docs/operations.md. Operations where the fuzzer saw it:",
            "",
        ]
        lines += [f"- {r.service}/{r.caller} `{op}`" for r, op in lenient]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=int(os.environ.get("EXAMPLES", "50")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "15")))
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz")
    args = parser.parse_args()
    started = time.monotonic()
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.platform()})",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "schemathesis": _version(),
        "examples": args.examples,
        "seed": args.seed,
        "phases": args.phases,
        "command": " ".join(["python scripts/fuzz.py", *sys.argv[1:]]),
    }
    results: list[FuzzResult] = []
    with tempfile.TemporaryDirectory(prefix="llmops-fuzz-") as tmp, fuzz_platform(Path(tmp)) as services:
        for name in args.services.split(","):
            try:
                target = services.get(name)
            except (RuntimeError, TimeoutError) as exc:  # reported as a failure, the other services still run
                results.append(FuzzResult(name, "-", failures={"(service did not start)": [str(exc)]}))
                print(f"{name}: did not start: {exc}", flush=True)
                continue
            for caller in target.callers:
                began = time.monotonic()
                result = run_schemathesis(
                    target, caller, Path(tmp) / "reports", max_examples=args.examples, seed=args.seed,
                    phases=args.phases, timeout_s=3600,
                )  # fmt: skip
                results.append(result)
                print(
                    f"{name}/{caller.name}: {len(result.operations)} operations, {len(result.failures)} failing "
                    f"({time.monotonic() - began:.0f} s)",
                    flush=True,
                )
                for op, findings in sorted(result.findings().items()):
                    print(f"  FAIL {op}: {'; '.join(sorted(findings))}")
                    print("    " + result.failures[op][0][:1500].replace("\n", "\n    "))
    meta["seconds"] = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(_markdown(results, meta))
    summary = {
        "meta": meta,
        "runs": [
            {
                "service": r.service,
                "caller": r.caller,
                "operations": sorted(r.operations),
                "failures": {op: sorted(f) for op, f in r.findings().items()},
                "lenient_typing": sorted(r.lenient),
            }
            for r in results
        ],
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out.with_suffix('.md')} and .json")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
