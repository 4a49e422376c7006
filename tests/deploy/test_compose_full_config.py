"""The full-profile override (deploy/compose/compose.full.yaml), resolved by the real Docker Compose: it leaves out
only what cannot run here, and changes nothing else of compose.yaml; and the tests' port-forward
(tests/deploy/compose.probe.yaml) publishes on the loopback only."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import COMPOSE_DIR, ROOT, compose_binary, compose_cmd, run

FULL = COMPOSE_DIR / "compose.full.yaml"
LEFT_OUT = {"qdrant", "grafana", "otel-collector", "jaeger"}
PLATFORM = {"gateway", "inference", "rag", "registry", "feedback", "guardrails"}
# What the override may change in a platform service's environment, and why (compose.full.yaml's header).
CHANGED_ENV = {"OTEL_TRACES_EXPORTER", "RAG_QDRANT_URL"}


def _services(override: bool) -> dict:
    cmd = compose_cmd("config", "--format", "json", override=FULL if override else None)
    return dict(json.loads(run(cmd).stdout)["services"])


def test_only_the_unrunnable_services_are_left_out() -> None:
    base, full = _services(False), _services(True)
    assert set(base) - set(full) == LEFT_OUT
    assert {"seed", "mlflow", "redis", "postgres", "prometheus"} | PLATFORM <= set(full)


def test_everything_else_is_compose_yaml() -> None:
    """Images, ports, volumes, networks and the environment (but tracing and RAG's Qdrant URL) as compose.yaml;
    the one-word probes ask the same URLs; the state and monitoring services are untouched."""
    base, full = _services(False), _services(True)
    for name in PLATFORM | {"mlflow"}:
        for field in ("image", "ports", "expose", "volumes", "networks", "command"):
            assert full[name].get(field) == base[name].get(field), (name, field)
        env = {k: v for k, v in base[name]["environment"].items() if k not in CHANGED_ENV}
        assert env.items() <= full[name]["environment"].items(), name
        url = re.search(r"http://127\.0\.0\.1:\d+/\w+", " ".join(base[name]["healthcheck"]["test"]))
        probe = full[name]["healthcheck"]["test"][-1]
        assert url and " " not in probe and f"'{url.group(0)}'" in probe, (name, probe)
    for name in PLATFORM:
        # Spans to a file in the container (no collector here), not `none`: trace ids exist, as in compose.yaml.
        assert full[name]["environment"]["OTEL_TRACES_EXPORTER"] == "file"
        assert full[name]["environment"]["LLMOPS_TRACES_FILE"].startswith("/tmp/")
    for name in ("redis", "postgres", "prometheus", "seed"):
        assert full[name] == base[name], name


def test_rag_runs_embedded_qdrant_on_its_volume() -> None:
    """No Qdrant server: RAG's local mode (empty URL) under its data folder, which is the rag-data volume; it waits
    for the gateway and the seed as before, not for a qdrant container."""
    base, full = _services(False), _services(True)
    rag = full["rag"]
    assert rag["environment"]["RAG_QDRANT_URL"] == ""
    assert [v["target"] for v in rag["volumes"]] == ["/app/.llmops/data"]
    assert set(rag["depends_on"]) == set(base["rag"]["depends_on"]) - {"qdrant"}


def test_the_probe_publishes_on_loopback_only() -> None:
    """The tests' port-forward is a project of its own, bound to 127.0.0.1, on the target project's networks."""
    cmd = [compose_binary(), "-f", str(ROOT / "tests" / "deploy" / "compose.probe.yaml"), "config", "--format", "json"]
    env = {"PROBE_TARGET": "llmops-full", "PROBE_IMAGE": "llmops/gateway:0.1.0", "PATH": "/usr/bin:/bin"}
    config = json.loads(run(cmd, env=env).stdout)
    assert config["name"] == "llmops-full-probe"
    probe = config["services"]["probe"]
    assert {p["host_ip"] for p in probe["ports"]} == {"127.0.0.1"}
    assert {n["name"] for n in config["networks"].values()} == {"llmops-full_platform", "llmops-full_edge"}
