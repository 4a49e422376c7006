"""Guardrails benchmark: detection quality (injection, PII) and latency/throughput of the input check.

    make bench-guardrails    # = .venv/bin/python bench/guardrails_bench.py [--skip-http] [--skip-peer]

Writes bench/results/guardrails_results.json and bench/results/guardrails_results.md. Injection quality is
leave-one-source-out over ../shared/datasets (bench/guardrails_detection.py), with `jailguard` beside it when
its venv exists (`JAILGUARD_VENV`, default ../jg-venv; how to make it: bench/guardrails_peer.py). Run it once
on a quiet machine: the latency part is CPU-bound and these machines are shared. After a retrain, re-run only
what the model changes: `--resume --stages injection,injection_deployed,injection_latency --cache-dir DIR`
(the named stages run again, the others are kept and the results say from when).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "libs")]

from prometheus_client import CollectorRegistry  # noqa: E402

from bench.guardrails_detection import (  # noqa: E402
    deployed_shares,
    detection_markdown,
    evasion,
    issue_table,
    loso_quality,
)
from bench.guardrails_peer import previous_loso  # noqa: E402
from bench.guardrails_rag import rag_markdown, rag_requests  # noqa: E402
from bench.guardrails_system_prompts import system_prompts, system_prompts_markdown  # noqa: E402
from services.guardrails.checker import Checker  # noqa: E402
from services.guardrails.detectors.base import CheckInput  # noqa: E402
from services.guardrails.detectors.injection import InjectionDetector  # noqa: E402
from services.guardrails.detectors.loader import load_detectors  # noqa: E402
from services.guardrails.metrics import GuardrailsMetrics  # noqa: E402
from services.guardrails.policies import PolicySet  # noqa: E402
from services.guardrails.settings import GuardrailsSettings  # noqa: E402
from services.guardrails.training.data import load_examples, sha256_file, shared_datasets_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PII_FILE = shared_datasets_dir() / "pii" / "generated_small.json"
PARTIAL = RESULTS / "guardrails_results.partial.json"
HTTP_TOKEN = "bench-guardrails-token"
STAGES = (
    "injection",
    "injection_deployed",
    "rag_requests",
    "system_prompts",
    "injection_latency",
    "pii",
    "pii_synthetic",
    "latency_in_process",
    "http_one_worker_1000_chars",
)
MULTILINGUAL = ROOT / "services" / "guardrails" / "data" / "multilingual_eval.jsonl"
TYPE_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}
JAILGUARD_VENV = Path(os.environ.get("JAILGUARD_VENV", ROOT.parent / "jg-venv"))
JAILGUARD_MODEL_DIR = Path(os.environ.get("JAILGUARD_MODEL_DIR", Path.home() / ".cache" / "llmops-bench" / "jailguard"))


def pii_quality(checker: Checker) -> dict[str, Any]:
    """Per-type precision/recall on the shared presidio-research sample (overlap match, same type)."""
    records = json.loads(PII_FILE.read_text())
    detectors = checker.detectors["input"]
    counts = {t: {"tp": 0, "fp": 0, "fn": 0, "gold": 0} for t in TYPE_MAP.values()}
    misses: list[str] = []
    for rec in records:
        text = rec["full_text"]
        gold = [
            (TYPE_MAP[s["entity_type"]], s["start_position"], s["end_position"])
            for s in rec["spans"]
            if s["entity_type"] in TYPE_MAP
        ]
        inp = CheckInput(text=text, direction="input")
        found = [(f.entity or "", f.start, f.end) for f in detectors["pii"].run(inp, {})]
        for etype, gs, ge in gold:
            counts[etype]["gold"] += 1
            if any(p[0] == etype and p[1] < ge and gs < p[2] for p in found):
                counts[etype]["tp"] += 1
            else:
                counts[etype]["fn"] += 1
                misses.append(f"{etype}: {text[gs:ge]!r}")
        for etype, ps, pe in found:
            if not any(g[0] == etype and g[1] < pe and ps < g[2] for g in gold):
                counts[etype]["fp"] += 1
                misses.append(f"false {etype}: {text[ps:pe]!r}")
    per_type = {}
    for etype, c in counts.items():
        predicted = c["tp"] + c["fp"]
        per_type[etype] = {
            **c,
            "precision": c["tp"] / predicted if predicted else None,
            "recall": c["tp"] / c["gold"] if c["gold"] else None,
        }
    return {"per_type": per_type, "errors": misses[:40], "sha256": sha256_file(PII_FILE)}


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        digits = body + check
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d for i, d in enumerate(int(c) for c in reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def synthetic_pii(checker: Checker) -> dict[str, Any]:
    """Self-generated sentences with valid identifiers in several formats (tests the validators and
    formats, not generalisation; no IBANs are in the shared set, hence this)."""
    rng = random.Random(11)
    templates = [
        "Please send the refund to {v} as soon as possible.",
        "My details: {v}. Thanks!",
        "Le numéro est {v}, merci de vérifier.",
        "Bitte überweisen Sie an {v} bis Freitag.",
    ]

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    makers = {
        "IBAN": lambda: rng.choice(
            [
                _iban("DE", digits(18)),
                _iban("GB", "NWBK" + digits(14)),
                _iban("FR", digits(23)),
                _iban("NL", "ABNA" + digits(10)),
            ]
        ),
        "CREDIT_CARD": lambda: rng.choice(
            [_luhn_complete("4", 16, rng), _luhn_complete("51", 16, rng), _luhn_complete("37", 15, rng)]
        ),
        "US_SSN": lambda: f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}",
        "IP_ADDRESS": lambda: rng.choice(
            [
                ".".join(str(rng.randint(0, 255)) for _ in range(4)),
                f"2001:db8:{rng.randint(1, 9999):x}::{rng.randint(1, 65535):x}",
            ]
        ),
        "EMAIL": lambda: (
            f"user{rng.randint(1, 999)}.{rng.choice(['x', 'mail', 'dev'])}"
            f"@{rng.choice(['example.com', 'mail.co.uk', 'uni-bonn.de'])}"
        ),
        "PHONE": lambda: rng.choice(
            [
                f"+1 ({digits(3)}) {digits(3)}-{digits(4)}",
                f"+44 20 {digits(4)} {digits(4)}",
                f"+49 30 {digits(8)}",
                f"0{digits(2)} {digits(3)} {digits(2)} {digits(2)}",
                f"{digits(3)}.{digits(3)}.{digits(4)}",
            ]
        ),
    }
    out = {}
    for etype, make in makers.items():
        hits = 0
        total = 40
        for i in range(total):
            value = make()
            if etype == "IBAN" and i % 2:
                value = " ".join(value[j : j + 4] for j in range(0, len(value), 4))  # printed form
            text = rng.choice(templates).format(v=value)
            start = text.index(value)
            found = checker.detectors["input"]["pii"].run(CheckInput(text=text, direction="input"), {})
            hits += any(f.entity == etype and f.start <= start and start + len(value) <= f.end + 1 for f in found)
        out[etype] = {"n": total, "recall": hits / total}
    return out


def benign_pool() -> list[str]:
    """Ordinary prose for the latency texts: the e-mails and English paragraphs of the benign sets."""
    return [
        re.sub(r"\s+", " ", e.text)
        for e in load_examples(synthetic=False)
        if e.label == 0 and e.source in ("llmail-emails", "xquad") and e.mode == "content" and e.lang == "en"
    ]


def injection_latency(checker: Checker, n: int = 2000) -> dict[str, Any]:
    """In-process p50/p99 of the injection detector alone, 1,000 characters, input and content mode."""
    detector = checker.detectors["input"]["injection"]
    rng = random.Random(5)
    texts = [sample_text(1000, benign_pool(), rng) for _ in range(50)]
    out = {}
    for mode in ("input", "content"):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            detector.run(CheckInput(text=texts[i % len(texts)], direction="input", mode=mode), {})
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[mode] = {"n": n, "p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(0.99 * n) - 1], 3),
                     "checks_per_s": round(1000 / statistics.mean(times), 1)}  # fmt: skip
    return out


def sample_text(chars: int, pool: list[str], rng: random.Random) -> str:
    """Benign prose of exactly `chars` characters, from held-out benign prompts."""
    out = ""
    while len(out) < chars:
        out += rng.choice(pool) + " "
    return out[:chars]


def latency(checker: Checker, policies: PolicySet) -> dict[str, Any]:
    """In-process p50/p99 of a full input check (default policy) by text size."""
    pool = benign_pool()
    rng = random.Random(7)
    policy = policies.policies[policies.default]
    res = {}
    for size, n in ((100, 2000), (1000, 2000), (10_000, 300)):
        texts = [sample_text(size, pool, rng) for _ in range(50)]
        for t in texts[:20]:
            checker.check("input", CheckInput(text=t, direction="input"), policy)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            checker.check("input", CheckInput(text=texts[i % len(texts)], direction="input"), policy)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        res[f"{size}_chars"] = {
            "n": n,
            "p50_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[int(0.99 * n) - 1], 3),
            "max_ms": round(times[-1], 3),
        }
    return res


def http_throughput(pool_text: str) -> dict[str, Any]:
    """Closed-loop throughput of one uvicorn worker with `hey` (a Go client), 1,000-char input checks."""
    if shutil.which("hey") is None:
        return {"skipped": "hey not installed (apt-get install hey)"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "services.guardrails.app:create_app",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {
        "PYTHONPATH": f"{ROOT}:{ROOT / 'libs'}",
        "GUARDRAILS_LOAD_CONTEXTUAL_ENCODER": "false",
        "GUARDRAILS_SERVICE_TOKEN": HTTP_TOKEN,  # the service refuses to start without one
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = RESULTS / "guardrails_hey_body.json"
    body.write_text(json.dumps({"text": pool_text}))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/v1/check/input"
        out = {}
        for label, args in (
            ("closed_loop_c10", ["-n", "3000", "-c", "10"]),
            ("rate_50rps_c1", ["-z", "10s", "-c", "1", "-q", "50"]),
        ):
            auth = ["-H", f"Authorization: Bearer {HTTP_TOKEN}"]
            run = subprocess.run(["hey", *args, *auth, "-m", "POST", "-T", "application/json", "-D", str(body), url],
                                 capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
            rps = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
            p50 = re.search(r"50% in ([\d.]+) secs", run.stdout)
            p99 = re.search(r"99% in ([\d.]+) secs", run.stdout)
            codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", run.stdout)
            out[label] = {
                "requests_per_s": float(rps.group(1)) if rps else None,
                "p50_ms": float(p50.group(1)) * 1000 if p50 else None,
                "p99_ms": float(p99.group(1)) * 1000 if p99 else None,
                "status_codes": dict(codes),
            }
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        body.unlink(missing_ok=True)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _ran(r: dict[str, Any], stage: str) -> dict[str, Any]:
    """A stage's results, or {} when this run skipped it."""
    value = r.get(stage) or {}
    return {} if "skipped" in value and len(value) == 1 else value


def _skipped(r: dict[str, Any], stage: str) -> list[str]:
    return [f"Not measured in this run ({r.get(stage, {}).get('skipped', 'absent')}).", ""]


def _stage_runs(r: dict[str, Any]) -> list[str]:
    """Which stage ran when, at what load: a --resume run mixes stages of several runs (and models)."""
    runs = r.get("stage_runs", {})
    if not runs:
        return []
    lines = ["| stage | ran | seconds | load average at its end |", "|---|---|---|---|"]
    for name in STAGES:
        v = runs.get(name)
        if v is None or not _ran(r, name):
            lines.append(f"| {name} | not run | - | - |")
        elif "date" in v:
            load = ", ".join(f"{x:.1f}" for x in v["load_average_at_end"])
            when = "this run" if v["date"] >= r["date"] else "kept, --resume"
            lines.append(f"| {name} | {v['date']} ({when}) | {v['seconds']} | {load} |")
        else:
            lines.append(f"| {name} | kept from {v['run']} | - | - |")
    return [*lines, ""]


def markdown(r: dict[str, Any]) -> str:
    """A readable summary of the JSON results (a stage this run skipped says so)."""
    lines = [
        "# Guardrails benchmark",
        "",
        f"Date {r['date']}; machine {r['machine']}; command `{r['command']}`; versions {r['versions']}.",
        "",
        f"Injection model: version {r['injection_model']['version']}, trained {r['injection_model']['trained_at']}.",
        "",
        *_stage_runs(r),
        *issue_table(r, RESULTS),
        *detection_markdown({**r["injection"], **_ran(r, "injection_deployed")}),
    ]
    lines += rag_markdown(r["rag_requests"]) if _ran(r, "rag_requests") else [
        "## The platform's own RAG requests, as the gateway checks them", "", *_skipped(r, "rag_requests")
    ]  # fmt: skip
    lines += system_prompts_markdown(r["system_prompts"]) if _ran(r, "system_prompts") else [
        "## Real application system prompts, as a system message in input mode", "", *_skipped(r, "system_prompts")
    ]  # fmt: skip
    lines += ["## Injection detector alone, in process, 1,000 characters", ""]
    if _ran(r, "injection_latency"):
        lines += ["| mode | n | p50 ms | p99 ms | checks/s (one thread) |", "|---|---|---|---|---|"]
        lines += [
            f"| {mode} | {m['n']} | {m['p50_ms']} | {m['p99_ms']} | {m['checks_per_s']} |"
            for mode, m in r["injection_latency"].items()
        ]
    else:
        lines += _skipped(r, "injection_latency")
    lines += ["", "## PII (shared presidio-research sample, overlap match)", ""]
    if _ran(r, "pii"):
        lines += ["| type | gold | TP | FP | precision | recall |", "|---|---|---|---|---|---|"]
        for etype, m in r["pii"]["per_type"].items():
            lines.append(
                f"| {etype} | {m['gold']} | {m['tp']} | {m['fp']} | {_fmt(m['precision'])} | {_fmt(m['recall'])} |"
            )
    else:
        lines += _skipped(r, "pii")
    if _ran(r, "pii_synthetic"):
        synthetic = ", ".join(f"{k} recall {v['recall']:.2f} (n={v['n']})" for k, v in r["pii_synthetic"].items())
        lines += ["", f"Synthetic, self-generated (valid identifiers in several formats): {synthetic}."]
    lines += ["", "## Latency of an input check, in process (default policy, all input detectors)", ""]
    if _ran(r, "latency_in_process"):
        lines += ["| size | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
        for size, m in r["latency_in_process"].items():
            lines.append(f"| {size} | {m['n']} | {m['p50_ms']} | {m['p99_ms']} | {m['max_ms']} |")
    else:
        lines += _skipped(r, "latency_in_process")
    lines += [
        "",
        "## HTTP, one uvicorn worker, 1,000-character input checks (hey)",
        "",
        "```",
        json.dumps(r.get("http_one_worker_1000_chars"), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run everything once and write the results files."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-peer", action="store_true", help="do not run jailguard")
    parser.add_argument(
        "--peer-from-previous",
        action="store_true",
        help="with --skip-peer: carry jailguard's side-by-side figures from the committed results (same sample)",
    )
    parser.add_argument("--resume", action="store_true", help="reuse the stages a failed run left behind")
    parser.add_argument("--cache-dir", type=Path, default=None, help="memoise features (faster reruns)")
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated stages to run (default: all); with --resume, the named stages are run again even "
        "when the finished results file has them (a failed run's partial file keeps what it finished)",
    )
    args = parser.parse_args()
    settings = GuardrailsSettings(load_contextual_encoder=False)
    policies = PolicySet.load(settings.policy_file)
    checker = Checker(load_detectors(settings), GuardrailsMetrics(CollectorRegistry()))
    started = time.time()
    import sklearn
    import tokenizers

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": {
            "numpy": np.__version__,
            "tokenizers": tokenizers.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "command": " ".join(["python bench/guardrails_bench.py", *sys.argv[1:]]),
    }
    detector: InjectionDetector = checker.detectors["input"]["injection"]  # type: ignore[assignment]
    meta = detector.model.metadata
    results["injection_model"] = {"version": detector.model.version, "trained_at": meta.get("trained_at"),
                                  "lineage": meta["data"]["lineage"]}  # fmt: skip
    peer_venv = None if args.skip_peer else JAILGUARD_VENV
    # Each stage's result is kept on disk as soon as it exists: a failure late in a long run keeps the rest.
    # --resume also continues a finished run that skipped stages (--stages): the stages it ran are kept.
    # A stage named in --stages is re-run over a finished results file (e.g. `--resume --stages injection` after
    # a retrain: without this it kept the old model's figures); a failed run's partial file keeps what it did.
    previous = PARTIAL if PARTIAL.exists() else RESULTS / "guardrails_results.json"
    wanted = set(args.stages.split(",")) if args.stages else set(STAGES)
    rerun = set() if previous == PARTIAL or not args.stages else wanted
    if args.resume and previous.exists():
        kept = json.loads(previous.read_text())
        results |= {k: v for k, v in kept.items() if k in STAGES and k not in rerun and _ran(kept, k)}
        # When each kept stage ran: an older results file without this record says only "an earlier run".
        old_runs = kept.get("stage_runs", {})
        results["stage_runs"] = {
            k: old_runs.get(k, {"run": "an earlier run (--resume)"}) for k in STAGES if k in results
        }
    # --peer-from-previous: jailguard's figures carried from the results file this run replaces (no jailguard here).
    peer_before = previous_loso(RESULTS / "guardrails_results.json") if args.peer_from_previous else None
    text_1k = sample_text(1000, benign_pool(), random.Random(3))
    stages = {
        # Two stages, each kept on disk when done: on a loaded machine the leave-one-source-out part (with
        # the peer) is worth keeping even when the shipped detector's pass over 60,000 texts does not finish.
        "injection": lambda: {
            "loso": loso_quality(shared_datasets_dir(), args.cache_dir, peer_venv, JAILGUARD_MODEL_DIR, peer_before)
        },
        "injection_deployed": lambda: {"deployed_benign": deployed_shares(detector), "evasion": evasion(detector)},
        "rag_requests": lambda: rag_requests(checker, policies.resolve(None, None)),
        "system_prompts": lambda: system_prompts(checker, policies.resolve(None, None), shared_datasets_dir()),
        "injection_latency": lambda: injection_latency(checker),
        "pii": lambda: pii_quality(checker),
        "pii_synthetic": lambda: synthetic_pii(checker),
        "latency_in_process": lambda: latency(checker, policies),
        "http_one_worker_1000_chars": lambda: (
            {"skipped": "--skip-http"} if args.skip_http else http_throughput(text_1k)
        ),
    }
    for name, run in stages.items():
        if name not in results and name not in wanted:
            results[name] = {"skipped": "not run this time (--stages)"}
        if name not in results:
            stage_started = time.time()
            results[name] = run()
            results.setdefault("stage_runs", {})[name] = {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stage_started)),
                "seconds": round(time.time() - stage_started, 1),
                "load_average_at_end": os.getloadavg(),
            }
            RESULTS.mkdir(parents=True, exist_ok=True)
            PARTIAL.write_text(json.dumps(results, indent=2) + "\n")
    results["wall_s"] = round(time.time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guardrails_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "guardrails_results.md").write_text(markdown(results))
    PARTIAL.unlink(missing_ok=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
