"""Compose and Helm agree on each service's image, port, environment and health endpoints, and both agree
with the service's settings class: no variable the code does not read, none that it needs missing."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import (
    CHART_DIR,
    ROOT,
    SERVICES,
    VALUES_FILES,
    by_kind,
    container_port,
    dockerfile_instructions,
)
from tests.deploy.settings_env import allowed_env, build_settings, settings_class

PROFILES = {"values-cpu.yaml": "compose_config", "values-gpu.yaml": "compose_gpu_config"}


def helm_view(docs: list[dict], service: str) -> dict:
    """Image, port, env (ConfigMap values + Secret values) and probe paths of one service in a rendering."""
    full = f"llmops-llmops-platform-{service}"
    deployment = by_kind(docs, "Deployment")[full]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = dict(by_kind(docs, "ConfigMap")[full]["data"])
    secrets = {s["metadata"]["name"]: s.get("stringData", {}) for s in docs if s["kind"] == "Secret"}
    secret_vars = set()
    for item in container.get("env", []):
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = secrets[ref["name"]][ref["key"]]
        secret_vars.add(item["name"])
    return {
        "image": container["image"],
        "port": container["ports"][0]["containerPort"],
        "env": env,
        "secret_vars": secret_vars,
        "liveness": container["livenessProbe"]["httpGet"]["path"],
        "readiness": container["readinessProbe"]["httpGet"]["path"],
    }


def compose_view(config: dict, service: str) -> dict:
    """The same facts from the resolved compose file."""
    svc = config["services"][service]
    test = " ".join(svc["healthcheck"]["test"])
    return {
        "image": svc["image"],
        "port": container_port(svc),
        "env": {k: ("" if v is None else str(v)) for k, v in svc.get("environment", {}).items()},
        "readiness": re.search(r"http://127\.0\.0\.1:\d+(/\w+)", test).group(1),
    }


def dockerfile_view(service: str) -> dict:
    """Port and liveness path the image itself declares."""
    ins = dockerfile_instructions(ROOT / "services" / service / "Dockerfile")
    health = next(args for name, args in ins if name == "HEALTHCHECK")
    return {
        "port": int(next(args for name, args in ins if name == "EXPOSE")),
        "liveness": re.search(r"http://127\.0\.0\.1:\d+(/\w+)", health).group(1),
    }


def test_services_are_the_same_everywhere(compose_config: dict, rendered: dict[str, list[dict]]) -> None:
    """The code's services, compose's platform services and the chart's services are one list."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(values["services"]) == set(SERVICES)
    assert set(SERVICES) <= set(compose_config["services"])
    for docs in rendered.values():
        deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
        names = {name.removeprefix("llmops-llmops-platform-") for name in deployments}
        assert set(SERVICES) <= names


@pytest.mark.parametrize("values_file", VALUES_FILES)
@pytest.mark.parametrize("service", SERVICES)
def test_compose_and_helm_agree(request: pytest.FixtureRequest, rendered, values_file: str, service: str) -> None:
    """Same image name and tag, same port, same variables (and the same values unless host-specific), same probes."""
    compose = compose_view(request.getfixturevalue(PROFILES[values_file]), service)
    helm = helm_view(rendered[values_file], service)
    image = dockerfile_view(service)
    tag = compose["image"].split(":")[-1]
    assert compose["image"].split("/")[-1] == helm["image"].split("/")[-1] == f"{service}:{tag}"
    assert compose["port"] == helm["port"] == image["port"]
    only_compose, only_helm = set(compose["env"]) - set(helm["env"]), set(helm["env"]) - set(compose["env"])
    assert not only_compose and not only_helm, f"only in compose: {only_compose}; only in helm: {only_helm}"
    for key, value in compose["env"].items():
        if "://" in value or key in helm["secret_vars"]:
            continue  # hostnames and secrets differ between a compose network and a cluster namespace
        assert helm["env"][key] == value, f"{service}: {key} is {value!r} in compose, {helm['env'][key]!r} in helm"
    assert compose["readiness"] == helm["readiness"] == "/readyz"
    assert image["liveness"] == helm["liveness"] == "/healthz"


@pytest.mark.parametrize("values_file", VALUES_FILES)
@pytest.mark.parametrize("service", SERVICES)
def test_deployments_agree_with_the_settings_class(
    request: pytest.FixtureRequest, rendered, values_file: str, service: str
) -> None:
    """Every variable set is one the service reads; the settings class builds from exactly that environment."""
    allowed = allowed_env(service)
    if allowed is None:
        pytest.skip(f"services/{service}/settings.py does not exist yet")
    compose = compose_view(request.getfixturevalue(PROFILES[values_file]), service)
    helm = helm_view(rendered[values_file], service)
    for where, view in (("compose", compose), ("helm", helm)):
        unknown = {k for k in view["env"] if k.upper() not in allowed}
        assert not unknown, f"{where} sets {sorted(unknown)} for {service}, which its code never reads"
        # Empty strings stand for "unset" in compose interpolation; the container would see them as "".
        settings = build_settings(service, view["env"])
        assert settings.port == view["port"], f"{where}: {service} would listen on {settings.port}"
    cls = settings_class(service)
    assert cls.model_fields["port"].default == compose["port"], "container port = the code's default port"


def test_cpu_deployments_admit_what_the_service_defaults_to(compose_config: dict, rendered) -> None:
    """llama.cpp on 2 cores: compose and the CPU chart run the inference admission the service's default was
    measured for (bench/load: 4 generations on 2 threads slowed an admitted chat 4.5x at p99), not an older one."""
    cls = settings_class("inference")
    assert cls is not None
    default = str(cls.model_fields["max_running"].default)
    compose = compose_view(compose_config, "inference")
    helm = helm_view(rendered["values-cpu.yaml"], "inference")
    assert compose["env"]["INFERENCE_MAX_RUNNING"] == helm["env"]["INFERENCE_MAX_RUNNING"] == default
    # ...and the token budget that keeps a long RAG prompt from running beside short chats.
    tokens = str(cls.model_fields["max_running_tokens"].default)
    assert compose["env"]["INFERENCE_MAX_RUNNING_TOKENS"] == helm["env"]["INFERENCE_MAX_RUNNING_TOKENS"] == tokens
