"""Static checks of the Grafana dashboards and the Prometheus rules: every query is valid PromQL (compiled by the
real promtool), every series it reads is exported by a service, written by a recording rule, or a known vLLM
series, and the alert rules behave as their unit tests say."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.promql import (
    DEPRECATED_VLLM,
    RULES_DIR,
    Query,
    dashboards,
    exported_metrics,
    known,
    label_values_parts,
    panel_queries,
    panels,
    recorded_metrics,
    rule_groups,
    series_names,
    substitute,
    variable_queries,
)

HERE = Path(__file__).resolve().parent
QUERIES = panel_queries()
EXPECTED_DASHBOARDS = {
    "platform-overview.json",
    "gateway.json",
    "inference.json",
    "rag.json",
    "guardrails.json",
    "feedback-drift.json",
}


def promtool() -> str:
    """Debian's promtool (apt-get install prometheus); skipped where it is not installed."""
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    return found


def test_the_dashboards_the_issue_asks_for_exist() -> None:
    """Overview, gateway usage and cost, inference, RAG, guardrails, feedback and drift."""
    assert set(dashboards()) >= EXPECTED_DASHBOARDS


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_structure(name: str) -> None:
    """Unique uid and panel ids, the provisioned Prometheus data source, panels inside the 24-column grid,
    every query panel with at least one target, and every variable an expression uses defined."""
    dash = dashboards()[name]
    assert dash["uid"].startswith("llmops-") and dash["title"] and "llmops" in dash["tags"]
    ids = [p["id"] for p in dash["panels"]] + [q["id"] for p in dash["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for panel in panels(dash):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, f"{name}/{panel['title']}: outside the grid"
        assert panel["datasource"]["uid"] == "prometheus", f"{name}/{panel['title']}: unknown data source"
        assert panel.get("targets"), f"{name}/{panel['title']}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"
            user_vars = {v for v in re.findall(r"\$([a-zA-Z_]\w*)", target["expr"]) if not v.startswith("__")}
            assert user_vars <= defined, f"{name}/{panel['title']}: undefined variables {user_vars - defined}"


def test_dashboard_uids_are_unique() -> None:
    """Grafana refuses two dashboards with one uid."""
    uids = [d["uid"] for d in dashboards().values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("query", QUERIES + variable_queries(), ids=lambda q: q.id)
def test_every_queried_series_exists(query: Query) -> None:
    """Each series a panel or variable reads is exported by a service under services/, recorded by a rule,
    a current vLLM series, or Prometheus' own `up`."""
    exported, recorded = exported_metrics(), recorded_metrics()
    expr = label_values_parts(query.expr)[0] if query.ref == "variable" else query.expr
    names = series_names(expr)
    assert names, f"{query.id}: no series in {query.expr!r}"
    assert not names & DEPRECATED_VLLM, f"{query.id}: uses a deprecated vLLM name"
    unknown = sorted(n for n in names if not known(n, exported, recorded))
    assert not unknown, f"{query.id} reads {unknown}, which no service exports and no rule records"


def test_rules_read_only_existing_series() -> None:
    """Recording and alert rules read only exported, recorded or Prometheus series."""
    exported, recorded = exported_metrics(), recorded_metrics()
    for file, groups in rule_groups().items():
        for group in groups:
            for rule in group["rules"]:
                unknown = sorted(n for n in series_names(rule["expr"]) if not known(n, exported, recorded))
                assert not unknown, f"{file}: {rule.get('alert') or rule.get('record')} reads {unknown}"


def test_inference_dashboard_has_current_vllm_panels() -> None:
    """The vLLM panels use the engine's current names (the issue names these four)."""
    text = "\n".join(q.expr for q in QUERIES if q.dashboard == "inference.json")
    for name in (
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
    ):
        assert name in text


def test_every_dashboard_query_compiles(tmp_path: Path) -> None:
    """promtool compiles each panel expression (as a recording rule), variables replaced as Grafana would."""
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(q.expr)} for i, q in enumerate(QUERIES)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_unit_tests() -> None:
    """The SLO, burn-rate, spend and drift-ratio rules behave as platform-rules.test.yml expects."""
    proc = subprocess.run(
        [promtool(), "test", "rules", "platform-rules.test.yml"], cwd=HERE, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alerts_are_actionable() -> None:
    """Every alert carries a severity and a summary; platform rules cover error rate, latency, budget burn, drift."""
    alerts = {}
    for groups in rule_groups().values():
        for group in groups:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
                    assert rule["annotations"]["summary"], rule["alert"]
                    alerts[rule["alert"]] = rule
    for required in (
        "LlmopsGatewayHighErrorRate",
        "LlmopsErrorBudgetBurnFast",
        "LlmopsErrorBudgetBurnSlow",
        "LlmopsGatewayLatencySLO",
        "LlmopsTeamSpendSpike",
        "LLMOpsPromptEmbeddingDrift",
    ):
        assert required in alerts
    assert (RULES_DIR / "platform.yml").exists()
