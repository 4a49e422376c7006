"""Prometheus config and rules (checked by the real promtool when Debian's `prometheus` package is there),
Grafana provisioning, and dashboards that only query metrics the services really export."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.deploy.conftest import COMPOSE_DIR, ROOT, SERVICES, run
from tests.deploy.settings_env import settings_class

PROM_DIR = COMPOSE_DIR / "prometheus"
DASHBOARDS = sorted((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
_METRIC = re.compile(r"\bllmops_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def exported_metrics() -> set[str]:
    """Every llmops_* series name written as a string literal in the services' code."""
    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        if "tests" not in path.parts:
            names |= set(re.findall(r"""["'](llmops_[a-z0-9_]+)["']""", path.read_text(errors="ignore")))
    return names


def promtool() -> str:
    """Debian's promtool (apt-get install prometheus); skipped where it is not installed."""
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    return found


def test_promtool_checks_config_and_rules() -> None:
    """prometheus.yml parses and every rule file's expressions compile."""
    run([promtool(), "check", "config", "--syntax-only", str(PROM_DIR / "prometheus.yml")])
    rules = sorted((PROM_DIR / "rules").glob("*.yml"))
    assert rules
    run([promtool(), "check", "rules", *map(str, rules)])


def test_every_service_is_scraped() -> None:
    """One scrape job per platform service, on its own container port."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name in SERVICES:
        cls = settings_class(name)
        port = cls.model_fields["port"].default if cls else None
        assert f"{name}:{port}" in targets, f"{name} is not scraped"


def test_grafana_provisioning() -> None:
    """A Prometheus data source with the uid the dashboards use, and a file provider for the dashboards folder."""
    ds = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"]: d for d in ds["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/llmops.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/llmops"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_query_real_metrics(path) -> None:
    """Each dashboard is valid JSON with a unique uid, and each llmops_* series it queries exists in code."""
    dash = json.loads(path.read_text())
    assert dash["uid"] and dash["title"]
    exported = exported_metrics()
    text = json.dumps(dash)
    for name in set(_METRIC.findall(text)):
        base = name
        for suffix in _SUFFIXES:
            base = base.removesuffix(suffix)
        assert name in exported or base in exported, f"{path.name} queries {name}, which no service exports"


def test_dashboard_uids_unique() -> None:
    """Grafana refuses two dashboards with one uid: keep them distinct."""
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
