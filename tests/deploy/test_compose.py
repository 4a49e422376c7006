"""The compose platform, resolved and validated by the real Docker Compose v2 (`config`; no engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.conftest import COMPOSE_DIR, ROOT, SERVICES, compose_cmd, container_port, run

STATEFUL = {
    "redis": "/data",
    "qdrant": "/qdrant/storage",
    "postgres": "/var/lib/postgresql/data",
    "mlflow": "/app/.llmops/data",  # artifacts/ and the auth database (auth/)
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
}
INFRA = {"redis", "qdrant", "postgres", "mlflow", "prometheus", "grafana", "otel-collector", "jaeger"}
# Distroless images without a shell or HTTP client: nothing to run a healthcheck with.
NO_HEALTHCHECK = {
    "otel-collector": "distroless image",
    "jaeger": "distroless image",
    "vllm-model": "one-shot job",
    "seed": "one-shot job",
}
ONE_SHOT = {"vllm-model", "seed"}  # dependents wait for them to complete successfully


def env_file() -> dict[str, str]:
    """deploy/compose/.env as a dict."""
    out = {}
    for line in (COMPOSE_DIR / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_config_is_valid_for_both_profiles() -> None:
    """`docker compose config -q` accepts the file with the cpu and with the gpu profile."""
    run(compose_cmd("config", "--quiet"))
    run(compose_cmd("config", "--quiet", gpu=True))


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """Negative control: the real implementation refuses what a YAML parser would accept."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  gateway:\n    depends_on:\n      nowhere: {condition: service_healthy}\n")
    proc = run(compose_cmd("config", "--quiet", override=bad), check=False)
    assert proc.returncode != 0 and "nowhere" in (proc.stderr + proc.stdout)


def test_whole_platform_is_there(compose_config: dict, compose_gpu_config: dict) -> None:
    """Six services plus Redis, Qdrant, PostgreSQL, MLflow, Prometheus, Grafana, OTel Collector, Jaeger; vLLM in gpu."""
    names = set(compose_config["services"])
    assert set(SERVICES) <= names
    assert names >= INFRA
    assert "vllm" not in names
    assert {"vllm", "vllm-model"} <= set(compose_gpu_config["services"])


def test_healthchecks_and_dependency_conditions(compose_config: dict, compose_gpu_config: dict) -> None:
    """Every long-running container has a healthcheck, and dependents wait on it."""
    services = compose_gpu_config["services"]
    for name, svc in services.items():
        if name in NO_HEALTHCHECK:
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, svc in services.items():
        for dep, spec in svc.get("depends_on", {}).items():
            if dep in ONE_SHOT:
                assert spec["condition"] == "service_completed_successfully", f"{name} -> {dep}"
                assert services[dep].get("restart", "no") == "no", f"{dep} is one-shot"
                continue
            want = "service_started" if dep in NO_HEALTHCHECK else None
            assert spec["condition"] in {"service_healthy", "service_started"}
            if want:
                assert spec["condition"] == want, f"{name} -> {dep}"
            elif dep != "gateway":
                assert spec["condition"] == "service_healthy", f"{name} waits for {dep} without its healthcheck"


def test_named_volumes_for_state(compose_config: dict) -> None:
    """Everything that must survive a restart lives on a named volume."""
    for name, target in STATEFUL.items():
        mounts = compose_config["services"][name].get("volumes", [])
        assert any(m["type"] == "volume" and m["target"] == target for m in mounts), f"{name}:{target}"
    assert compose_config["services"]["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]


def test_versions_and_ports_come_from_env_file() -> None:
    """No image tag nor host port is written in compose.yaml itself: all of them are ${...} from .env."""
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if re.match(r"\s*image:", code):
            assert "${" in code, line
        for port in re.findall(r'"([^"]+):\d+"', code):
            assert port.startswith("${"), line
    env = env_file()
    for key, value in env.items():
        if key.endswith("_IMAGE"):
            assert re.search(r":[\w.\-]+$", value) and not value.endswith(":latest"), f"{key} must pin a tag"


def test_images_carry_the_project_version(compose_config: dict) -> None:
    """Platform images are <prefix>/<service>:<project version>, the tag `make images` produces."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    env = env_file()
    assert env["LLMOPS_VERSION"] == version and env["LLMOPS_IMAGE_TAG"].startswith(version)
    for name in SERVICES:
        svc = compose_config["services"][name]
        assert svc["image"] == f"{env['LLMOPS_IMAGE_PREFIX']}/{name}:{env['LLMOPS_IMAGE_TAG']}"
        assert svc["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert Path(svc["build"]["context"]) == ROOT
        assert not svc.get("command") and not svc.get("entrypoint"), "the image's CMD is the entry point"


def test_gpu_profile_serves_vllm_on_a_reserved_gpu(compose_config: dict, compose_gpu_config: dict) -> None:
    """gpu: the official vLLM image with an NVIDIA reservation; inference switches to it."""
    vllm = compose_gpu_config["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:v")
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--model=/models/production" in vllm["command"]
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "1"
    fetch = " ".join(compose_gpu_config["services"]["vllm-model"]["command"])
    assert "@production" in fetch and "mlflow artifacts download" in fetch
    gpu_env = compose_gpu_config["services"]["inference"]["environment"]
    assert gpu_env["INFERENCE_ENGINE"] == "openai"
    assert gpu_env["INFERENCE_UPSTREAM_URL"] == "http://vllm:8000/v1"
    assert compose_gpu_config["services"]["inference"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    cpu_env = compose_config["services"]["inference"]["environment"]
    assert cpu_env["INFERENCE_ENGINE"] == "llamacpp"


def test_example_override_swaps_one_service() -> None:
    """The shipped override replaces guardrails' image/build and leaves the rest of the platform intact."""
    import json

    override = COMPOSE_DIR / "compose.override.example.yaml"
    merged = json.loads(run(compose_cmd("config", "--format", "json", override=override)).stdout)
    guard = merged["services"]["guardrails"]
    assert guard["image"] == "student/guardrails:dev"
    assert guard["build"]["dockerfile"] == "Dockerfile"
    assert guard["environment"]["GUARDRAILS_PORT"] == "8005"
    assert merged["services"]["gateway"]["image"].startswith("llmops/gateway:")


def test_observability_wiring(compose_config: dict) -> None:
    """Grafana gets its provisioning and dashboards; Prometheus its config and rules; the collector its config."""

    def sources(name: str) -> set[str]:
        return {Path(m["source"]).name for m in compose_config["services"][name]["volumes"] if m["type"] == "bind"}

    assert {"provisioning", "dashboards"} <= sources("grafana")
    assert {"prometheus.yml", "rules"} <= sources("prometheus")
    assert "config.yaml" in sources("otel-collector")


@pytest.mark.parametrize("service", SERVICES)
def test_platform_service_health(compose_config: dict, service: str) -> None:
    """The compose healthcheck asks the service's own /readyz on its container port."""
    svc = compose_config["services"][service]
    port = container_port(svc)
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])


def test_mlflow_starts_with_auth_and_only_the_registry_holds_its_admin_password(compose_gpu_config: dict) -> None:
    """Issue 12 row 1: MLflow runs behind its basic-auth app (started by services.registry.mlflow_server), its
    admin password reaches the registry (and its seed) and nobody else; rag, feedback and vllm-model use their own
    users."""
    services = compose_gpu_config["services"]
    mlflow = services["mlflow"]
    assert mlflow["command"] == ["python", "-m", "services.registry.mlflow_server"]
    env = mlflow["environment"]
    assert env.get("MLFLOW_AUTH_ENABLED", "true") == "true" and env["MLFLOW_AUTH_ADMIN_USERNAME"] == "llmops-registry"
    admin_password = env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert admin_password and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("sqlite:////app/.llmops/data/auth/")
    users = dict(item.split(":", 1) for item in env["MLFLOW_AUTH_USERS"].split(","))
    assert set(users) == {"rag", "feedback", "vllm-model"} and admin_password not in users.values()
    registry = services["registry"]["environment"]
    assert registry["REGISTRY_MLFLOW_USERNAME"] == "llmops-registry"
    assert registry["REGISTRY_MLFLOW_PASSWORD"] == admin_password
    assert services["rag"]["environment"]["RAG_MLFLOW_TRACKING_URI"] == f"http://rag:{users['rag']}@mlflow:5000"
    for name in ("feedback", "vllm-model"):
        got = services[name]["environment"]
        assert (got["MLFLOW_TRACKING_USERNAME"], got["MLFLOW_TRACKING_PASSWORD"]) == (name, users[name])
    # The seed is the registry's own code (same image, same settings), run once before it serves.
    assert services["seed"]["environment"]["REGISTRY_MLFLOW_PASSWORD"] == admin_password
    for name, service in services.items():
        if name in ("mlflow", "registry", "seed"):
            continue
        values = [str(v) for v in (service.get("environment") or {}).values()] + [str(service.get("command", ""))]
        assert not any(admin_password in v for v in values), f"{name} holds MLflow's admin password"
