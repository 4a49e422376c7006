"""What the dashboards and rules query: their PromQL, the series names in it, and where each name comes from.

Shared by the static checks (every name is exported by a service, recorded by a rule, or a known vLLM series)
and the live check (every panel returns data from a real Prometheus scraping real services).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
DASHBOARD_DIR = COMPOSE_DIR / "grafana" / "dashboards"
RULES_DIR = COMPOSE_DIR / "prometheus" / "rules"

# The vLLM OpenAI server's own series (vllm/v1/metrics/loggers.py; counters gain `_total`, histograms
# `_bucket/_sum/_count`). `vllm:gpu_cache_usage_perc` and `vllm:time_per_output_token_seconds` are the deprecated
# names of `vllm:kv_cache_usage_perc` and `vllm:inter_token_latency_seconds`: dashboards must use the current ones.
KNOWN_VLLM = frozenset(
    {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:request_time_per_output_token_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
        "vllm:request_params_max_tokens",
        "vllm:iteration_tokens_total",
        "vllm:cache_config_info",
    }
)
DEPRECATED_VLLM = frozenset({"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds"})
# Series Prometheus itself adds to every scrape target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Grafana's template variables, replaced the way Grafana would with every value selected.
VARIABLE_VALUES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$team": ".*",
    "$model": ".*",
}

_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard panel (or a template variable)."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def id(self) -> str:
        """Readable test id: file / panel title / refId."""
        return f"{self.dashboard}/{self.panel}/{self.ref}"


def dashboards() -> dict[str, dict]:
    """Every provisioned dashboard by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    """Panels with queries, rows' nested panels included."""
    out: list[dict] = []
    for panel in dashboard.get("panels", []):
        out.extend(panel.get("panels", []) if panel.get("type") == "row" else [panel])
    return out


def panel_queries() -> list[Query]:
    """Every target expression of every panel of every dashboard."""
    return [
        Query(name, panel["title"], target["refId"], target["expr"])
        for name, dash in dashboards().items()
        for panel in panels(dash)
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[Query]:
    """The `label_values(metric, label)` queries of the dashboards' template variables."""
    return [
        Query(name, f"${var['name']}", "variable", var["definition"])
        for name, dash in dashboards().items()
        for var in dash.get("templating", {}).get("list", [])
        if var.get("type") == "query"
    ]


def substitute(expr: str) -> str:
    """The expression as Prometheus receives it from Grafana (longest variable names first)."""
    for name in sorted(VARIABLE_VALUES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLE_VALUES[name])
    return expr


def series_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, label names and values left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def base_name(name: str) -> str:
    """A histogram's or summary's family name for one of its series."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


@functools.cache
def exported_metrics() -> frozenset[str]:
    """Every llmops_* series name the services' code declares (string literals outside tests)."""
    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        if "tests" not in path.parts:
            names |= set(re.findall(r"""["'](llmops_[a-z0-9_]+)["']""", path.read_text(errors="ignore")))
    return frozenset(names)


def rule_groups() -> dict[str, list[dict]]:
    """Rule groups per rules file."""
    return {p.name: yaml.safe_load(p.read_text())["groups"] for p in sorted(RULES_DIR.glob("*.yml"))}


def recorded_metrics() -> set[str]:
    """Names the recording rules write."""
    groups = [g for file_groups in rule_groups().values() for g in file_groups]
    return {rule["record"] for g in groups for rule in g["rules"] if "record" in rule}


def known(name: str, exported: frozenset[str], recorded: set[str]) -> bool:
    """True when a series name comes from a service, a recording rule, vLLM, or Prometheus itself."""
    if name in PROMETHEUS_SERIES or name in recorded:
        return True
    if name.startswith("vllm:"):
        return name in KNOWN_VLLM or base_name(name) in KNOWN_VLLM
    if name.startswith("llmops_"):
        # Counters are declared without `_total` in some code bases; prometheus_client adds it.
        return bool({name, base_name(name), name.removesuffix("_total")} & exported)
    return False


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def label_values_parts(definition: str) -> tuple[str, str]:
    """(series selector, label) of a `label_values(selector, label)` variable query."""
    match = _LABEL_VALUES.match(definition)
    if match is None:
        raise ValueError(f"not a label_values(selector, label) query: {definition!r}")
    return match.group(1), match.group(2)
