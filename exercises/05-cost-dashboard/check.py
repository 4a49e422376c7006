"""Check exercise 5: a Grafana dashboard with cost-per-team panels in work/team-cost.json.

Reads the panels' PromQL, checks every metric name against the series the services really export, validates
the queries with `promtool` and, when a Prometheus answers on PROMETHEUS_URL, runs them. Usage: check.py [--work DIR].
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import REPO, Report, http, parser

HERE = Path(__file__).resolve().parent
COST, TOKENS = "llmops_gateway_cost_usd_total", "llmops_gateway_tokens_total"
_NAME = re.compile(r"\b(llmops_[a-z0-9_]+)")
_GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def exported_metrics() -> set[str]:
    """Metric names the services declare (from every services/*/metrics.py and the code they call)."""
    names: set[str] = set()
    for path in (REPO / "services").glob("*/**/*.py"):
        if "tests" not in path.parts:
            names.update(re.findall(r"[\"'](llmops_[a-z0-9_]+)[\"']", path.read_text(errors="replace")))
    return names


def known(name: str, exported: set[str]) -> bool:
    """Is `name` a series Prometheus would scrape (histogram suffixes included)?"""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in exported or base in exported or f"{base}_total" in exported


def panels(doc: dict) -> list[dict]:
    """Panels, including those nested in rows."""
    out = []
    for p in doc.get("panels") or []:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def main() -> None:
    """Check the dashboard's structure, metric names and PromQL."""
    args = parser(__doc__ or "", HERE / "work").parse_args()
    report = Report("Exercise 5 - a Grafana dashboard for cost per team")
    path = args.work.resolve() / "team-cost.json"
    if not report.check(path.exists(), f"{path} exists"):
        report.finish()
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        report.abort(f"{path.name} is valid JSON ({exc})", "Grafana's 'Export > Save to file' writes valid JSON")
    queries = [
        (p.get("title", ""), t.get("expr", "")) for p in panels(doc) for t in p.get("targets") or [] if t.get("expr")
    ]
    report.check(bool(queries), f"the dashboard has panels with PromQL targets ({len(queries)} found)")

    def norm(expr: str) -> str:
        return re.sub(r"\s+", " ", expr)

    per_team = [
        (t, e)
        for t, e in queries
        if COST in e and re.search(r"\bby\s*\(\s*team\s*\)", e) and re.search(r"\b(rate|increase)\s*\(", e)
    ]
    report.check(
        bool(per_team),
        "a panel shows cost per team: sum by (team) over rate()/increase() of " + COST,
        "counters only go up: take rate(...[5m]) or increase(...[24h]) before summing",
    )
    unit = [(t, e) for t, e in queries if COST in e and TOKENS in e and "/" in e and re.search(r"\bby\s*\(\s*team", e)]
    report.check(
        bool(unit),
        "a panel shows cost per 1k tokens by team: cost rate divided by token rate",
        f"divide sum by (team) (rate({COST}[...])) by sum by (team) (rate({TOKENS}[...])), times 1000",
    )
    for title, expr in dict.fromkeys(per_team + unit):
        report.info(f"{title!r}: {norm(expr)}")
    exported = exported_metrics()
    unknown = sorted({n for _, e in queries for n in _NAME.findall(e) if not known(n, exported)})
    report.check(
        not unknown,
        "every metric name exists in the services' code" + (f" (unknown: {unknown})" if unknown else ""),
        "copy names from `curl -s localhost:8000/metrics -H 'Authorization: Bearer $LLMOPS_METRICS_TOKEN'`;"
        " a typo gives an empty panel, not an error",
    )
    _promtool(report, queries)
    _live(report, list(dict.fromkeys(per_team + unit)))
    report.finish()


def _promtool(report: Report, queries: list[tuple[str, str]]) -> None:
    """Parse every query with promtool (as recording rules), Grafana's $__ variables replaced by 5m."""
    promtool = shutil.which("promtool")
    if not promtool or not queries:
        report.info("promtool not found: PromQL syntax not checked (apt-get install prometheus)")
        return
    rules = {
        "groups": [
            {
                "name": "exercise5",
                "rules": [
                    {"record": f"exercise5:query_{i}", "expr": _GRAFANA_VARS.sub("5m", e)}
                    for i, (_, e) in enumerate(queries)
                ],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    report.check(result.returncode == 0, "promtool parses every query", (result.stdout + result.stderr)[-800:])


def _live(report: Report, queries: list[tuple[str, str]]) -> None:
    """Information only: run the queries on a live Prometheus (compose mode) when one answers."""
    base = os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:9090")
    if http("GET", base + "/-/ready", timeout=2)[0] != 200:
        report.info(f"no Prometheus at {base}: queries not run (compose mode has one)")
        return
    for title, expr in queries:
        q = urllib.parse.quote(_GRAFANA_VARS.sub("5m", expr))
        status, body = http("GET", f"{base}/api/v1/query?query={q}")
        n = len(body.get("data", {}).get("result", [])) if status == 200 and isinstance(body, dict) else "error"
        report.info(f"Prometheus answers {title!r} with {n} series")


if __name__ == "__main__":
    main()
