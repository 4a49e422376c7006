"""Compose exposes only the front door (issue 14 "Only the gateway is published"; issue 12 rows 5, 12, 13):
the gateway published, the UIs on the host's loopback, everything else on an internal network; Redis with a
password; every internal service with its token, every caller with the same value; no secret committed."""

from __future__ import annotations

import importlib.util
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import COMPOSE_DIR, ROOT, compose_cmd, compose_test_secrets, run, secrets_example_keys

UIS = {"grafana", "prometheus", "jaeger", "mlflow"}  # published on UI_BIND_ADDRESS (127.0.0.1 by default)
SECRET_NAME = re.compile(r"(PASSWORD|_KEY|_TOKEN)$")


def secret(key: str) -> str:
    """The throwaway value the test secrets file gives `key`."""
    return f"test-{key.lower().replace('_', '-')}"


@pytest.fixture(params=["cpu", "gpu"])
def config(request: pytest.FixtureRequest) -> dict:
    return request.getfixturevalue("compose_config" if request.param == "cpu" else "compose_gpu_config")


def test_only_the_gateway_and_loopback_uis_publish_ports(config: dict) -> None:
    """Redis, PostgreSQL, Qdrant, vLLM and every service but the gateway publish nothing; the UIs only on 127.0.0.1."""
    published = {name: svc["ports"] for name, svc in config["services"].items() if svc.get("ports")}
    assert "gateway" in published and set(published) - {"gateway"} <= UIS, sorted(published)
    assert [p["target"] for p in published["gateway"]] == [8000]
    for name in set(published) - {"gateway"}:
        assert all(p["host_ip"] == "127.0.0.1" for p in published[name]), f"{name} is published beyond loopback"


def test_everything_but_the_front_door_is_on_the_internal_network_only(config: dict) -> None:
    assert config["networks"]["platform"].get("internal") is True
    for name, svc in config["services"].items():
        networks = set(svc.get("networks", {}))
        if name == "gateway" or name in UIS:
            assert networks == {"platform", "edge"}, name
        else:
            assert networks == {"platform"}, f"{name} must not be on the edge network"


def test_redis_requires_a_password_and_every_client_sends_it(config: dict) -> None:
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == secret("REDIS_PASSWORD")
    assert redis["environment"]["REDISCLI_AUTH"] == secret("REDIS_PASSWORD"), "the healthcheck authenticates"
    urls = {
        (name, key): value
        for name, svc in config["services"].items()
        for key, value in (svc.get("environment") or {}).items()
        if isinstance(value, str) and value.startswith("redis://")
    }
    assert {name for name, _ in urls} >= {"gateway", "rag", "feedback"}
    for where, url in urls.items():
        assert url.startswith(f"redis://:{secret('REDIS_PASSWORD')}@redis:6379/"), where


def test_postgres_is_not_published_and_has_a_generated_password(config: dict) -> None:
    postgres = config["services"]["postgres"]
    assert not postgres.get("ports")
    assert postgres["environment"]["POSTGRES_PASSWORD"] == secret("POSTGRES_PASSWORD")


def test_each_internal_service_gets_its_token_and_its_callers_the_same(config: dict) -> None:
    env = {name: svc.get("environment") or {} for name, svc in config["services"].items()}
    inference, guardrails = secret("INFERENCE_SERVICE_TOKEN"), secret("GUARDRAILS_SERVICE_TOKEN")
    assert env["inference"]["INFERENCE_SERVICE_TOKEN"] == env["gateway"]["GATEWAY_INFERENCE_TOKEN"] == inference
    assert env["guardrails"]["GUARDRAILS_SERVICE_TOKEN"] == guardrails
    assert env["gateway"]["GATEWAY_GUARDRAILS_TOKEN"] == env["rag"]["RAG_GUARDRAILS_TOKEN"] == guardrails
    assert env["rag"]["RAG_SERVICE_TOKEN"] == secret("RAG_SERVICE_TOKEN")
    assert env["gateway"]["GATEWAY_METRICS_TOKEN"] == secret("GATEWAY_METRICS_TOKEN")
    assert env["inference"]["INFERENCE_UPSTREAM_API_KEY"] == secret("VLLM_API_KEY")
    if "vllm" in config["services"]:
        assert f"--api-key={secret('VLLM_API_KEY')}" in config["services"]["vllm"]["command"]
    # Feedback registers datasets at the registry under its own service identity (issue 12, row 8).
    assert env["feedback"]["FEEDBACK_REGISTRY_TOKEN"] == secret("FEEDBACK_REGISTRY_TOKEN")
    assert env["registry"]["REGISTRY_SERVICE_TOKENS"] == f"feedback:{secret('FEEDBACK_REGISTRY_TOKEN')}"


def test_prometheus_scrapes_the_gateway_with_the_metrics_token(config: dict) -> None:
    """The gateway's /metrics answers only GATEWAY_METRICS_TOKEN: Prometheus reads it from a compose secret."""
    assert config["secrets"]["gateway_metrics_token"]["environment"] == "GATEWAY_METRICS_TOKEN"
    mounts = config["services"]["prometheus"]["secrets"]
    assert [m["source"] for m in mounts] == ["gateway_metrics_token"]
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "llmops-gateway")
    assert job["authorization"]["credentials_file"] == mounts[0]["target"]


def test_no_dev_mode_and_no_demo_principal(config: dict) -> None:
    """Issue 12 row 12: the demo principals (demo-*-token) exist only under `make up`'s dev flag."""
    for name, svc in config["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            assert not key.endswith("DEV_MODE"), f"{name} sets {key}"
            assert "demo-" not in str(value), f"{name}: {key} uses a demo token"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    proc = run(compose_cmd("config", "--quiet", with_secrets=False), check=False)
    assert proc.returncode != 0 and "deploy/compose/secrets.env" in proc.stderr, proc.stderr


def test_every_required_secret_is_listed_in_the_example_and_none_is_committed() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required and required <= set(secrets_example_keys())
    for name in (".env", "gpu.env"):
        for line in (COMPOSE_DIR / name).read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            assert line.startswith("#") or not SECRET_NAME.search(key), f"{name} commits a secret: {key}"
    assert all(not value for value in _values(COMPOSE_DIR / "secrets.env.example").values()), "placeholders only"
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/compose/secrets.env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "deploy/compose/secrets.env must be git-ignored"


def _values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_make_up_generates_the_secrets_file_private_and_keeps_values(tmp_path: Path) -> None:
    """`platformctl.py compose-secrets`: every key, random values, mode 0600; a second run keeps them."""
    spec = importlib.util.spec_from_file_location("platformctl_compose", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    ctl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ctl
    spec.loader.exec_module(ctl)
    shutil.copy(COMPOSE_DIR / "secrets.env.example", tmp_path / "secrets.env.example")
    target = tmp_path / "secrets.env"
    target.write_text("REDIS_PASSWORD=kept\n")
    target.chmod(0o644)
    ctl.REPO = tmp_path  # only for the message it prints
    ctl.compose_secrets(target)
    first = _values(target)
    assert set(first) == set(secrets_example_keys()) and all(first.values())
    assert first["REDIS_PASSWORD"] == "kept" and stat.S_IMODE(target.stat().st_mode) == 0o600
    ctl.compose_secrets(target)
    assert _values(target) == first
    assert compose_test_secrets().exists()
