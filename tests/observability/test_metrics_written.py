"""Metrics that tell the truth: every llmops_* series an alert rule or a dashboard panel reads is declared by a
service AND written by its code. A series that is declared but never incremented, observed or set looks healthy
(a flat 0) while the thing it watches goes wrong; issue 19 found one (`llmops_inference_admission_rejections_total`).

Static, so it runs without servers: each `Counter/Gauge/Histogram/Summary(...)` declaration is found with `ast`,
and the attribute it is bound to must be written somewhere in non-test code (`.inc(`, `.labels(`, `.set(`, ...),
directly or after being handed to another object under a keyword (`emitted=metrics.events_emitted`, then
`self.emitted.inc()`). Collectors that build a `*MetricFamily` at scrape time count as written. The live
Prometheus test (test_live_prometheus.py) checks the same panels return data from the running services."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.observability.promql import base_name, panel_queries, rule_groups, series_names

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"Counter", "Gauge", "Histogram", "Summary"}
FAMILIES = {"CounterMetricFamily", "GaugeMetricFamily", "HistogramMetricFamily", "SummaryMetricFamily"}
WRITES = r"\s*(\.labels\(|\.inc\(|\.dec\(|\.set\(|\.observe\(|\.set_function\(|\.time\(|\.track_inprogress\()"


@cache
def source_files() -> tuple[Path, ...]:
    return tuple(
        p
        for top in ("services", "libs")
        for p in (ROOT / top).rglob("*.py")
        if "tests" not in p.relative_to(ROOT).parts
    )


@cache
def declarations() -> dict[str, str | None]:
    """Series name -> the attribute or variable it is bound to (None: a scrape-time metric family)."""
    found: dict[str, str | None] = {}
    for path in source_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if kind in FAMILIES:
                found[str(node.args[0].value)] = None
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
                func = node.value.func
                kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if kind in KINDS and node.value.args and isinstance(node.value.args[0], ast.Constant):
                    target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                    bound = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                    found[str(node.value.args[0].value)] = bound
    return found


def is_written(name: str, code: str, seen: frozenset[str] = frozenset()) -> bool:
    """`name` is written, or handed on under a keyword whose receiver writes it."""
    # `name.observe(`, or through a child cache: `children(values).observe(` (gateway/stages/settle.py's `Children`).
    if re.search(rf"\b{re.escape(name)}\b(\([^()]*\))?{WRITES}", code):
        return True
    # Handed on: `alias = metrics.name,` / `alias = Children(metrics.name)`.
    handed = set(re.findall(rf"\b(\w+)\s*=\s*(?:\w+\()?[\w.]*\b{re.escape(name)}\b\s*[,)\n]", code)) - seen - {name}
    return any(is_written(alias, code, seen | {name}) for alias in handed)


def referenced_series() -> list[str]:
    names: set[str] = set()
    for query in panel_queries():
        names |= series_names(query.expr)
    for groups in rule_groups().values():
        for group in groups:
            for rule in group["rules"]:
                names |= series_names(rule["expr"])
    return sorted(n for n in names if n.startswith("llmops_"))


def declared_as(name: str, declared: dict[str, str | None]) -> str | None:
    for candidate in (name, base_name(name), name.removesuffix("_total")):
        if candidate in declared:
            return candidate
    return None


@pytest.mark.parametrize("series", referenced_series())
def test_every_series_a_rule_or_panel_reads_is_written_by_code(series: str) -> None:
    declared = declarations()
    name = declared_as(series, declared)
    assert name is not None, f"{series} is read by a rule or panel but no service declares it"
    bound = declared[name]
    if bound is None:
        return  # built at scrape time by a collector
    assert is_written(bound, all_code()), f"{series} (bound to `{bound}`) is declared but never written"


@cache
def all_code() -> str:
    return "\n".join(p.read_text() for p in source_files())


def test_the_check_catches_a_declared_but_unwritten_metric() -> None:
    """The detector itself: a counter only declared is reported, one handed on and incremented is not."""
    code = (
        "self.lonely = Counter('llmops_x_total', 'x')\n"
        "self.passed = Counter('llmops_y_total', 'y')\n"
        "Emitter(emitted=metrics.passed)\n"
        "self.emitted.inc()\n"
    )
    assert not is_written("lonely", code)
    assert is_written("passed", code)
