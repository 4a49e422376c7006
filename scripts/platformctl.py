"""Run the platform locally without Docker: `make up | down | status | logs` call this.

Every process runs in the background with its pid under .llmops/run and its log under .llmops/logs.
Re-running `up` while the platform is up is harmless: running, ready services are left alone.
`<SERVICE>_APP` (e.g. `make up GUARDRAILS_APP=examples.minimal_guardrails.app:create_app`) runs a replacement
of one service on that service's port; see docs/swap-a-service.md.

Secrets (admin keys, the service tokens internal services demand of their callers) are generated once into
.llmops/secrets.json and handed to each process as SECRET_ENV says; .llmops/ is private to its owner (0700, files
0600, written atomically so no reader ever sees one with wider permissions or half-written).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATE = REPO / ".llmops"
# A second, private platform beside a developer's `make up` (the soak and load benchmarks, tests that must share no
# port, Redis or data with it): LLMOPS_STATE_DIR moves every pid, log, secret and data file, LLMOPS_PORT_OFFSET
# shifts every port (Redis's too: a private redis-server is started on 6379 + offset). Unset: the usual platform.
STATE = Path(os.environ.get("LLMOPS_STATE_DIR") or DEFAULT_STATE).resolve()
PORT_OFFSET = int(os.environ.get("LLMOPS_PORT_OFFSET") or 0)
RUN, LOGS, DATA = STATE / "run", STATE / "logs", STATE / "data"
SECRETS = STATE / "secrets.json"
ENV_FILE = STATE / "env"
COMPOSE_SECRETS = REPO / "deploy" / "compose" / "secrets.env"
PY = sys.executable
DEMO_MODEL = "smollm2-135m-instruct"

# Every secret generated once into secrets.json: name -> prefix of its random value (the prefix says what it is).
GENERATED_SECRETS = {
    "admin_key": "sk-llmops-admin-",
    "feedback_admin_token": "fb-admin-",
    "registry_admin_token": "reg-admin-",
    "mlflow_admin_password": "mlf-",
    "inference_service_token": "svc-inference-",
    "guardrails_service_token": "svc-guardrails-",
    "rag_service_token": "svc-rag-",
    "gateway_metrics_token": "metrics-",
    # MLflow users besides the registry's admin (MLFLOW_AUTH_USERS): the services that log runs, and a read-only
    # UI login for learners (issue 12, row 1: without a user every MLflow call is a 401).
    "mlflow_rag_password": "mlf-rag-",
    "mlflow_feedback_password": "mlf-feedback-",
    "mlflow_viewer_password": "mlf-viewer-",
    # The course's evaluator (REGISTRY_EVALUATOR_TOKENS, dev setup only): module 04 records its evaluation through
    # POST /v1/evaluations, so a promotion gates on a run the registry wrote, not on numbers the requester typed.
    "course_evaluator_token": "eval-course-",
    # Feedback's service identity at the registry (REGISTRY_SERVICE_TOKENS): it registers exported datasets on
    # behalf of the caller, who becomes their `created_by` (issue 12, row 8), instead of as a demo principal.
    "feedback_registry_token": "svc-feedback-",
}

# MLflow's non-admin users and the experiments each one writes to; they read everything else. Whoever creates an
# experiment may write there, so a fresh install needs no grant; `make up` grants these for experiments an older,
# unauthenticated install created. `viewer` is the learner's UI login (LLMOPS_MLFLOW_*); the course's scripts log
# their comparison runs with it (exercises 2 and 3).
MLFLOW_USERS = {"rag": ("rag",), "feedback": ("llmops-feedback",), "viewer": ("prompt-evals", "rag-chunking")}
MLFLOW_ADMIN = "llmops-registry"  # MLflow's only admin: the registry (services/registry/mlflow_server.py)


def local_port(port: int) -> int:
    """Where a platform port is in this run (shifted by LLMOPS_PORT_OFFSET)."""
    return port + PORT_OFFSET


def redis_url() -> str:
    """The platform's Redis (the shared one on 6379, or the private one of an offset platform)."""
    return f"redis://127.0.0.1:{local_port(6379)}/0"


MLFLOW_URL = f"http://127.0.0.1:{local_port(5000)}"


def composed_secrets(data: dict[str, str]) -> dict[str, str]:
    """Values built from several generated secrets (a `name:secret,...` list), wired like any other secret."""
    return {
        "mlflow_auth_users": ",".join(f"{user}:{data[f'mlflow_{user}_password']}" for user in MLFLOW_USERS),
        "registry_evaluator_tokens": f"course:{data['course_evaluator_token']}",
        "registry_service_tokens": f"feedback:{data['feedback_registry_token']}",
    }


# (process, variable, secret): which process gets which secret in which variable. Wiring a secret into one more
# process is one line here. A service holds its own token to check callers (<PREFIX>SERVICE_TOKEN), its callers
# hold the same value under their own name; "seed" is the registry seed run once MLflow is up.
SECRET_ENV: list[tuple[str, str, str]] = [
    ("seed", "REGISTRY_ADMIN_TOKEN", "registry_admin_token"),
    ("registry", "REGISTRY_ADMIN_TOKEN", "registry_admin_token"),
    # MLflow's basic-auth admin is the registry alone (issue 12, row 1): the server and the registry share it.
    ("mlflow", "MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow_admin_password"),
    ("seed", "REGISTRY_MLFLOW_PASSWORD", "mlflow_admin_password"),
    ("registry", "REGISTRY_MLFLOW_PASSWORD", "mlflow_admin_password"),
    ("mlflow", "MLFLOW_AUTH_USERS", "mlflow_auth_users"),
    ("rag", "RAG_MLFLOW_PASSWORD", "mlflow_rag_password"),
    ("feedback", "MLFLOW_TRACKING_PASSWORD", "mlflow_feedback_password"),  # read by the mlflow library itself
    ("registry", "REGISTRY_EVALUATOR_TOKENS", "registry_evaluator_tokens"),
    ("registry", "REGISTRY_SERVICE_TOKENS", "registry_service_tokens"),
    ("feedback", "FEEDBACK_REGISTRY_TOKEN", "feedback_registry_token"),
    ("inference", "INFERENCE_SERVICE_TOKEN", "inference_service_token"),
    ("guardrails", "GUARDRAILS_SERVICE_TOKEN", "guardrails_service_token"),
    ("gateway", "GATEWAY_ADMIN_KEY", "admin_key"),
    ("gateway", "GATEWAY_INFERENCE_TOKEN", "inference_service_token"),
    ("gateway", "GATEWAY_GUARDRAILS_TOKEN", "guardrails_service_token"),
    ("gateway", "GATEWAY_METRICS_TOKEN", "gateway_metrics_token"),
    ("rag", "RAG_SERVICE_TOKEN", "rag_service_token"),
    ("rag", "RAG_GUARDRAILS_TOKEN", "guardrails_service_token"),
    ("feedback", "FEEDBACK_ADMIN_TOKEN", "feedback_admin_token"),
]

# Secrets a learner needs in .llmops/env (loaded with `set -a; . .llmops/env; set +a`), beside the URLs.
ENV_FILE_SECRETS = {
    "LLMOPS_ADMIN_KEY": "admin_key",
    "LLMOPS_REGISTRY_ADMIN_TOKEN": "registry_admin_token",
    "LLMOPS_FEEDBACK_ADMIN_TOKEN": "feedback_admin_token",
    # Only for calling an internal service directly, as the course does once (clients use the gateway).
    "LLMOPS_INFERENCE_TOKEN": "inference_service_token",
    "LLMOPS_GUARDRAILS_TOKEN": "guardrails_service_token",
    "LLMOPS_RAG_SERVICE_TOKEN": "rag_service_token",
    "LLMOPS_METRICS_TOKEN": "gateway_metrics_token",
    "LLMOPS_MLFLOW_PASSWORD": "mlflow_viewer_password",  # the MLflow UI's read-only login (user `viewer`)
    "LLMOPS_EVALUATOR_TOKEN": "course_evaluator_token",  # POST /v1/evaluations as the `course` evaluator
}


def secret_env(process: str, secrets_: dict[str, str]) -> dict[str, str]:
    """The secret variables one process (or "seed") starts with."""
    composed = composed_secrets(secrets_)  # secrets_ itself may be a defaultdict (tests/docs lists processes)
    return {
        var: composed[name] if name in composed else secrets_[name] for proc, var, name in SECRET_ENV if proc == process
    }


@dataclass
class Proc:
    """One background process of the platform."""

    name: str
    cmd: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0
    seed: list[str] | None = None  # an idempotent command run once this process is ready
    prestart: list[str] | None = None  # an idempotent command run before the process starts
    seed_env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[], None] | None = None  # run in-process once this process is ready (after its seed)


def _uvicorn(module: str, port: int, app: str | None = None) -> list[str]:
    return [
        PY,
        "-m",
        "uvicorn",
        app or f"services.{module}.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def replacement(service: str) -> str | None:
    """What `<SERVICE>_APP` names in place of the platform's own service, if anything."""
    return os.environ.get(f"{service.upper()}_APP", "").strip() or None


def service_cmd(service: str, port: int) -> list[str]:
    """The platform's service, or its replacement: a `package.module:factory` runs under uvicorn like the
    platform's own; anything else is a command line (any language) that must serve /readyz on 127.0.0.1:<port>."""
    app = replacement(service)
    if app is None or re.fullmatch(r"[\w.]+:[\w.]+", app):
        cmd = _uvicorn(service, local_port(port), app)
        workers = gateway_workers() if service == "gateway" else 1
        if workers == 1:
            return cmd
        # Two or more workers share the port (uvicorn's supervisor): `kill -HUP` on it then replaces them one at a
        # time, each new worker ready before the old one stops, so a restart loses no request (docs/operations.md).
        # The supervisor gives a new worker 5 s to be ready by default, then abandons the roll; the gateway's
        # start takes longer than that on a busy 2-core machine, and its health pings wait on the same clock.
        return [*cmd, "--workers", str(workers), "--timeout-worker-healthcheck", str(WORKER_HEALTHCHECK_S)]
    return shlex.split(app)


WORKER_HEALTHCHECK_S = 60
DRAIN_S = 3


def gateway_workers() -> int:
    """GATEWAY_WORKERS: how many uvicorn workers serve the gateway's port (1 when unset)."""
    raw = os.environ.get("GATEWAY_WORKERS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        sys.exit(f"error: GATEWAY_WORKERS={raw!r} must be a number of workers from 1 to 16")
    return int(raw)


def processes(secrets_: dict[str, str]) -> list[Proc]:
    """The platform, in start order (each waits for the ones before it)."""
    common = {
        "PYTHONPATH": f"{REPO}:{REPO / 'libs'}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # Traces of every service in one JSON-lines file (compose sends OTLP to the collector instead).
        "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "file"),
        "LLMOPS_TRACES_FILE": str(STATE / "traces.jsonl"),
    }
    registry_env = {
        **common,
        # The explicit dev flag: only `make up` sets it (compose and Helm never do). It gives the seeded demo
        # principals readable tokens (demo-member-token, demo-reviewer-token); the admin token is generated.
        "REGISTRY_DEV_MODE": "true",
        "REGISTRY_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{local_port(5000)}",
        # MLflow's only admin (its basic-auth app, started by services.registry.mlflow_server); issue 12 row 1.
        "REGISTRY_MLFLOW_USERNAME": MLFLOW_ADMIN,
        # The platform's evaluators plus the course's (its token: LLMOPS_EVALUATOR_TOKEN), in the dev setup only.
        "REGISTRY_TRUSTED_EVALUATORS": "rag,guardrails,finetune,course",
    }
    gateway_env = {
        **common,
        "GATEWAY_INFERENCE_URL": f"http://127.0.0.1:{local_port(8001)}/v1",
    }
    if gateway_workers() > 1:
        # A worker told to stop serves DRAIN_S more with `Connection: close` (docs/operations.md, rolling restarts).
        gateway_env["GATEWAY_SHUTDOWN_DRAIN_S"] = str(DRAIN_S)
    inference_env = dict(common)
    rag_env = {
        **common,
        "RAG_GATEWAY_URL": f"http://127.0.0.1:{local_port(8000)}",
        "RAG_EVENTS_REDIS_URL": redis_url(),  # its own trace events, beside the gateway's
        "RAG_GUARDRAILS_URL": f"http://127.0.0.1:{local_port(8005)}",
        "RAG_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{local_port(5000)}",
        "RAG_MLFLOW_EXPERIMENT": MLFLOW_USERS["rag"][0],
        "RAG_MLFLOW_USERNAME": "rag",
    }
    if (REPO / "services/registry/app.py").exists():
        gateway_env["GATEWAY_REGISTRY_URL"] = f"http://127.0.0.1:{local_port(8003)}"
        # Serve what the registry says is in production, and follow promotions.
        inference_env["INFERENCE_REGISTRY_URL"] = f"http://127.0.0.1:{local_port(8003)}"
        # Answer with rag-answer@production (the seed puts it there); register ingestion runs as dataset versions.
        rag_env["RAG_REGISTRY_URL"] = f"http://127.0.0.1:{local_port(8003)}"
        rag_env["RAG_REGISTRY_TOKEN"] = "demo-member-token"  # the seeded demo member (dev mode)
    if (REPO / "services/guardrails/app.py").exists() or replacement("guardrails"):
        # The platform's service or its replacement.
        gateway_env["GATEWAY_GUARDRAILS_URL"] = f"http://127.0.0.1:{local_port(8005)}"
    procs = [
        Proc(
            "mlflow",
            [PY, "-m", "services.registry.mlflow_server"],
            f"http://127.0.0.1:{local_port(5000)}/health",
            common,
            timeout_s=240,
            seed=[PY, "-m", "services.registry.seed"],
            seed_env={**registry_env, **secret_env("seed", secrets_)},
            setup=lambda: grant_mlflow_experiments(secrets_),
        ),
        Proc(
            "registry",
            service_cmd("registry", 8003),
            f"http://127.0.0.1:{local_port(8003)}/readyz",
            registry_env,
        ),
        Proc("inference", service_cmd("inference", 8001), f"http://127.0.0.1:{local_port(8001)}/readyz", inference_env),
        Proc(
            "guardrails",
            service_cmd("guardrails", 8005),
            f"http://127.0.0.1:{local_port(8005)}/readyz",
            common,
        ),
        Proc(
            "gateway",
            service_cmd("gateway", 8000),
            f"http://127.0.0.1:{local_port(8000)}/readyz",
            gateway_env,
        ),
        Proc(
            "rag",
            service_cmd("rag", 8002),
            f"http://127.0.0.1:{local_port(8002)}/readyz",
            rag_env,
            # The course's own docs become a collection every team can read; local Qdrant locks its folder,
            # so this runs before the service (re-running skips unchanged documents); a replacement brings its own.
            prestart=None
            if replacement("rag")
            else [PY, "-m", "services.rag.cli", "ingest-dir", "docs", "--collection", "llmops-docs"],
        ),
        Proc(
            "feedback",
            service_cmd("feedback", 8004),
            f"http://127.0.0.1:{local_port(8004)}/readyz",
            {
                **common,
                "FEEDBACK_GATEWAY_URL": f"http://127.0.0.1:{local_port(8000)}",
                "FEEDBACK_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{local_port(5000)}",
                "FEEDBACK_MLFLOW_EXPERIMENT": MLFLOW_USERS["feedback"][0],
                "MLFLOW_TRACKING_USERNAME": "feedback",
                "FEEDBACK_REGISTRY_URL": f"http://127.0.0.1:{local_port(8003)}",
            },
        ),
    ]
    for proc in procs:
        proc.env = {**proc.env, **secret_env(proc.name, secrets_), **private_env(proc.name)}
        proc.seed_env = {**proc.seed_env, **private_env("registry")} if proc.seed else proc.seed_env
    return procs


def private_env(process: str) -> dict[str, str]:
    """Where a process keeps its data and finds Redis when this is a private platform (LLMOPS_STATE_DIR or
    LLMOPS_PORT_OFFSET set): the services' defaults all point into the repository's own .llmops/ and at :6379."""
    if STATE == DEFAULT_STATE and not PORT_OFFSET:
        return {}  # the usual platform: the services' defaults, so its processes' fingerprints stay as they were
    return {
        "mlflow": {
            "MLFLOW_PORT": str(local_port(5000)),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{DATA / 'mlflow' / 'mlflow.db'}",
            "MLFLOW_ARTIFACTS_DESTINATION": str(DATA / "mlflow" / "artifacts"),
        },
        "registry": {
            "REGISTRY_DATABASE_URL": f"sqlite:///{DATA / 'registry' / 'registry.db'}",
            "REGISTRY_FILE_ARTIFACT_ROOTS": f"{DATA / 'models'},{REPO / 'services' / 'guardrails' / 'artifacts'}",
        },
        "rag": {"RAG_DATA_DIR": str(DATA / "rag")},
        "feedback": {
            "FEEDBACK_REDIS_URL": redis_url(),
            "FEEDBACK_SQLITE_PATH": str(DATA / "feedback" / "feedback.db"),
            "FEEDBACK_EXPORT_DIR": str(DATA / "feedback" / "exports"),
        },
    }.get(process, {})


def _mlflow_api(path: str, password: str, body: dict[str, str], method: str = "POST") -> tuple[int, dict]:
    """One call to MLflow's REST API as its admin (basic auth; the password never reaches a log)."""
    url = f"{MLFLOW_URL}/api/{path}"
    data = None
    if method == "GET":
        url += "?" + urllib.parse.urlencode(body)
    else:
        data = json.dumps(body).encode()
    auth = base64.b64encode(f"{MLFLOW_ADMIN}:{password}".encode()).decode()
    request = urllib.request.Request(
        url, method=method, data=data, headers={"authorization": f"Basic {auth}", "content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def grant_mlflow_experiments(data: dict[str, str]) -> None:
    """Each MLflow user of MLFLOW_USERS may write runs to its experiments (its default elsewhere is READ).

    A fresh install needs nothing (the creator of an experiment manages it), but an experiment an older,
    unauthenticated install created belongs to nobody: the admin grants EDIT, idempotently."""
    password = data["mlflow_admin_password"]
    for user, experiment in ((u, e) for u, names in MLFLOW_USERS.items() for e in names):
        status, found = _mlflow_api("2.0/mlflow/experiments/get-by-name", password, {"experiment_name": experiment},
                                    "GET")  # fmt: skip
        if status == 200:
            experiment_id = found["experiment"]["experiment_id"]
        else:
            status, found = _mlflow_api("2.0/mlflow/experiments/create", password, {"name": experiment})
            if status != 200:
                sys.exit(f"error: could not create the MLflow experiment {experiment!r}: {status} {found}")
            experiment_id = found["experiment_id"]
        grant = {"username": user, "resource_type": "experiment", "resource_id": experiment_id, "permission": "EDIT"}
        status, out = _mlflow_api("3.0/mlflow/users/permissions/grant", password, grant)
        if status != 200 and out.get("error_code") != "RESOURCE_ALREADY_EXISTS":
            sys.exit(f"error: could not let MLflow user {user!r} write to {experiment!r}: {status} {out}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
        return pid
    except OSError:
        path.unlink(missing_ok=True)
        return None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(name: str, cmd: list[str], env: dict[str, str]) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    # Lets `up` see that a service was swapped, or its settings (a new token) changed, since it started.
    (RUN / f"{name}.cmd").write_text(json.dumps(launch_fingerprint(cmd, env)))
    return proc.pid


def launch_fingerprint(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    """What a process was started with: its command line and a digest of its environment (no secret in clear)."""
    digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()
    return {"cmd": cmd, "env_sha256": digest}


def _started_with(name: str) -> object | None:
    """The fingerprint a running process was started with (None when unknown)."""
    path = RUN / f"{name}.cmd"
    return json.loads(path.read_text()) if path.exists() else None


def _stop(name: str) -> bool:
    """Stop one process this tool started (its whole process group); False when it was not running."""
    pid = _pid(name)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if _pid(name) is None:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    (RUN / f"{name}.pid").unlink(missing_ok=True)
    (RUN / f"{name}.cmd").unlink(missing_ok=True)
    return True


# Redis's memory cap (LLMOPS_REDIS_MAXMEMORY, "0": leave Redis as it is) and policy: past the cap Redis refuses
# writes (the gateway answers 507 state_store_full) instead of evicting keys, since an evicted counter, reservation
# or key record would silently hand out budget or storage (issue 12, row 10).
REDIS_MAXMEMORY_DEFAULT = "512mb"
REDIS_POLICY = "noeviction"
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def redis_maxmemory() -> tuple[str, int]:
    """The configured cap as Redis spells it and in bytes (0: no cap applied)."""
    text = os.environ.get("LLMOPS_REDIS_MAXMEMORY", REDIS_MAXMEMORY_DEFAULT).strip().lower() or "0"
    match = re.fullmatch(r"(\d+)\s*(b|k|kb|m|mb|g|gb)?", text)
    if match is None:
        sys.exit(f"error: LLMOPS_REDIS_MAXMEMORY={text!r} is not a size (e.g. 512mb, 2gb, 0 for no cap)")
    return text.replace(" ", ""), int(match.group(1)) * _UNITS[match.group(2) or ""]


def _redis_config(name: str, port: int = 6379) -> str:
    """A CONFIG GET value of the local Redis."""
    reply = _redis_command("CONFIG", "GET", name, port=port)
    return str(reply[1]) if isinstance(reply, list) and len(reply) == 2 else ""


def _redis_command(*args: str, port: int = 6379) -> str | int | list | None:
    """One command to the local Redis in RESP (this tool needs no redis package); an error reply raises."""
    wire = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn, conn.makefile("rb") as reader:
        conn.sendall(wire.encode())

        def read() -> str | int | list | None:
            line = reader.readline().rstrip(b"\r\n").decode()
            kind, rest = line[:1], line[1:]
            if kind == "-":
                raise RuntimeError(rest)
            if kind == ":":
                return int(rest)
            if kind == "$":
                return None if int(rest) < 0 else reader.read(int(rest) + 2)[:-2].decode()
            if kind == "*":
                return [read() for _ in range(int(rest))]
            return rest

        return read()


def cap_shared_redis(spelled: str, limit: int, port: int = 6379) -> None:
    """Apply the cap to a Redis this tool did not start (often shared with other programs), carefully: never below
    what it already holds (every write would fail), never above a lower cap an operator set; policy noeviction."""
    try:
        current = int(_redis_config("maxmemory", port) or 0)
        info = str(_redis_command("INFO", "memory", port=port))
        used = int(re.search(r"used_memory:(\d+)", info).group(1))  # type: ignore[union-attr]
        if used >= limit:
            print(
                f"  redis      warning: it holds {used} bytes already, over LLMOPS_REDIS_MAXMEMORY={spelled}: "
                "cap not applied"
            )
        elif current == 0 or current > limit:
            _redis_command("CONFIG", "SET", "maxmemory", str(limit), port=port)
            print(f"  redis      maxmemory set to {spelled} (CONFIG SET on the shared Redis; LLMOPS_REDIS_MAXMEMORY)")
        policy = _redis_config("maxmemory-policy", port)
        if policy != REDIS_POLICY:
            _redis_command("CONFIG", "SET", "maxmemory-policy", REDIS_POLICY, port=port)
            print(f"  redis      maxmemory-policy {policy} -> {REDIS_POLICY} (no platform key may be evicted)")
    except (OSError, RuntimeError, AttributeError, IndexError, ValueError) as exc:
        print(f"  redis      warning: could not apply maxmemory {spelled} / {REDIS_POLICY} ({exc}); set them yourself")


def ensure_redis() -> str:
    """Use a Redis already on :6379 (capped with CONFIG SET), else start redis-server with persistence under
    .llmops/data/redis and the cap on its command line."""
    spelled, limit = redis_maxmemory()
    port = local_port(6379)
    if _port_open(port):
        print(f"  redis      already listening on 127.0.0.1:{port} (using it)")
        if limit:
            cap_shared_redis(spelled, limit, port)
        return redis_url()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "error: no Redis on 127.0.0.1:6379 and no redis-server binary.\n"
            "  Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and re-run.\n"
            "  Keys, limits and spend live in Redis so they hold across gateway replicas."
        )
    folder = DATA / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    cap = ["--maxmemory", str(limit), "--maxmemory-policy", REDIS_POLICY] if limit else []
    _spawn(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--save",
            "",
            *cap,
        ],
        {},
    )
    for _ in range(50):
        if _port_open(port):
            print(f"  redis      started (data in {DATA / 'redis'}, maxmemory {spelled if limit else 'none'})")
            return redis_url()
        time.sleep(0.1)
    sys.exit("error: redis-server did not start; see .llmops/logs/redis.log")


def _private_state() -> None:
    """.llmops/ readable by its owner only (an older checkout may have left it world-readable)."""
    STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    STATE.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write `path` with mode 0600 from its first byte and replace the old file in one step (no window in which
    another user could read it, no half-written file for a reader)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_secrets() -> dict[str, str]:
    """The platform's secrets, generating any that is missing (an older state gains the new ones)."""
    _private_state()
    data = json.loads(SECRETS.read_text()) if SECRETS.exists() else {}
    for name, prefix in GENERATED_SECRETS.items():
        data.setdefault(name, prefix + secrets.token_urlsafe(24))
    write_private(SECRETS, json.dumps(data, indent=2))
    return data


def _http(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def seed_demo(gateway: str, data: dict[str, str]) -> str:
    """The demo team and its key; a saved key that still works is kept."""
    if data.get("demo_key") and _http("GET", f"{gateway}/v1/me", data["demo_key"])[0] == 200:
        return data["demo_key"]
    admin = data["admin_key"]
    _http("POST", f"{gateway}/admin/teams", admin, {"team": "demo", "rpm_limit": 600, "budget_usd": 10.0})
    status, created = _http(
        "POST",
        f"{gateway}/admin/keys",
        admin,
        {"team": "demo", "project": "course", "name": "demo key (make up)", "rpm_limit": 120, "budget_usd": 5.0},
    )
    if status != 201:
        sys.exit(f"error: could not create the demo key: {status} {created}")
    data["demo_key"] = created["key"]
    write_private(SECRETS, json.dumps(data, indent=2))
    return data["demo_key"]


def _run_step(proc: Proc, cmd: list[str], env: dict[str, str], step: str, verb: str) -> None:
    """Run an idempotent setup command of a process, logging to .llmops/logs/<name>-<step>.log."""
    print(f"  {proc.name:<10} {verb} ...", end="", flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{proc.name}-{step}.log", "ab") as log:
        code = subprocess.call(cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        print(" failed")
        sys.exit(f"error: the {step} step of {proc.name} failed; see .llmops/logs/{proc.name}-{step}.log")
    print(" done")


def env_file_text(gateway: str, key: str, data: dict[str, str]) -> str:
    """.llmops/env: where everything answers, the demo key, and the secrets a learner uses (ENV_FILE_SECRETS)."""
    values = {
        "LLMOPS_GATEWAY_URL": gateway,
        "LLMOPS_API_KEY": key,
        "LLMOPS_REGISTRY_URL": f"http://127.0.0.1:{local_port(8003)}",
        "LLMOPS_MLFLOW_URL": f"http://127.0.0.1:{local_port(5000)}",
        "LLMOPS_MLFLOW_USERNAME": "viewer",  # read-only; its password is LLMOPS_MLFLOW_PASSWORD
        "LLMOPS_RAG_URL": f"http://127.0.0.1:{local_port(8002)}",
        "LLMOPS_FEEDBACK_URL": f"http://127.0.0.1:{local_port(8004)}",
        "LLMOPS_INFERENCE_URL": f"http://127.0.0.1:{local_port(8001)}",
        "LLMOPS_GUARDRAILS_URL": f"http://127.0.0.1:{local_port(8005)}",
        **{var: data[name] for var, name in ENV_FILE_SECRETS.items()},
    }
    return "".join(f"{var}={value}\n" for var, value in values.items())


def up() -> None:
    """Start what is not running, wait for readiness, seed the demo key, print how to call it."""
    print("Starting the platform (local mode, no Docker):")
    redis_url = ensure_redis()
    data = _load_secrets()
    for proc in processes(data):
        env = {**proc.env, "GATEWAY_REDIS_URL": redis_url}
        if _pid(proc.name) and _ready(proc.ready_url):
            if _started_with(proc.name) in (None, launch_fingerprint(proc.cmd, env)):
                print(f"  {proc.name:<10} already running")
                continue
            _stop(proc.name)  # a service was swapped in (or back out), or its settings changed (a new token)
            print(f"  {proc.name:<10} stopped, to start it with its new command or settings")
        port = int(proc.ready_url.split(":")[2].split("/")[0])
        if _port_open(port) and not _pid(proc.name):
            sys.exit(f"error: port {port} is taken by another program; stop it or run `make down` first")
        if proc.prestart:
            _run_step(proc, proc.prestart, env, "prestart", "preparing")
        pid = _spawn(proc.name, proc.cmd, env)
        swapped = f" [{proc.name.upper()}_APP={replacement(proc.name)}]" if replacement(proc.name) else ""
        print(f"  {proc.name:<10} starting (pid {pid}){swapped} ...", end="", flush=True)
        deadline = time.monotonic() + proc.timeout_s
        while not _ready(proc.ready_url):
            if _pid(proc.name) is None:
                print(" failed")
                sys.exit(
                    f"error: {proc.name} exited; last lines of .llmops/logs/{proc.name}.log:\n"
                    + "".join((LOGS / f"{proc.name}.log").read_text().splitlines(True)[-15:])
                )
            if time.monotonic() > deadline:
                sys.exit(f"error: {proc.name} not ready after {proc.timeout_s:.0f}s; see .llmops/logs/{proc.name}.log")
            time.sleep(0.25)
        print(" ready")
        if proc.seed:
            _run_step(proc, proc.seed, {**env, **proc.seed_env}, "seed", "seeding")
        if proc.setup:
            proc.setup()
    gateway = f"http://127.0.0.1:{local_port(8000)}"
    key = seed_demo(gateway, data)
    write_private(ENV_FILE, env_file_text(gateway, key, data))
    print(f"""
The platform is up.
  gateway URL : {gateway}   (OpenAI-compatible: {gateway}/v1)
  demo API key: {key}
  (also in .llmops/env, readable by you only; `set -a; . .llmops/env; set +a` exports them)

Try it:
  curl -s {gateway}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "What is LLMOps?"}}]}}'

`make status` shows the processes, `make logs` follows their logs, `make down` stops everything.""")


def down() -> None:
    """Stop every process this tool started (services first, Redis last)."""
    names = [p.stem for p in RUN.glob("*.pid")] if RUN.exists() else []
    for name in sorted(names, key=lambda n: n == "redis"):
        if _stop(name):
            print(f"  stopped {name}")
    print("The platform is down." if names else "Nothing was running.")


def status() -> None:
    """One line per process: pid and readiness."""
    data = _load_secrets()
    print(f"{'process':<11}{'pid':<9}{'ready':<7}url")
    for proc in processes(data):
        pid = _pid(proc.name)
        print(
            f"{proc.name:<11}{pid or '-':<9}{'yes' if _ready(proc.ready_url) else 'no':<7}"
            f"{proc.ready_url.rsplit('/', 1)[0]}"
        )
    redis_pid = _pid("redis")
    print(
        f"{'redis':<11}{redis_pid or '(external)' if _port_open(local_port(6379)) else '-':<9}"
        f"{'yes' if _port_open(local_port(6379)) else 'no':<7}{redis_url().removesuffix('/0')}"
    )


def logs(name: str | None) -> None:
    """Follow the logs (all, or one process)."""
    files = [LOGS / f"{name}.log"] if name else sorted(LOGS.glob("*.log"))
    if not files or not all(f.exists() for f in files):
        sys.exit("no logs yet: run `make up` first")
    os.execvp("tail", ["tail", "-n", "20", "-F", *map(str, files)])


def compose_secrets(target: Path = COMPOSE_SECRETS) -> None:
    """deploy/compose/secrets.env: every key of secrets.env.example, a random value for each one still empty
    (values already there are kept), mode 0600."""
    keys = [
        line.split("=", 1)[0].strip()
        for line in (target.parent / "secrets.env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    current: dict[str, str] = {}
    if target.exists():
        for line in target.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                current[key.strip()] = value.strip()
    missing = [key for key in keys if not current.get(key)]
    for key in missing:
        current[key] = secrets.token_urlsafe(24)  # URL-safe: some end up inside redis:// and postgresql:// URLs
    header = (
        "# Generated by `python scripts/platformctl.py compose-secrets` (keys: secrets.env.example). Keep private.\n"
    )
    write_private(target, header + "".join(f"{key}={value}\n" for key, value in current.items()))
    print(
        f"{target.relative_to(REPO)}: {len(missing)} secret(s) generated, {len(keys) - len(missing)} kept (mode 0600)"
    )


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "logs", "compose-secrets"])
    parser.add_argument("name", nargs="?", help="process name for `logs`")
    args = parser.parse_args()
    actions = {"up": up, "down": down, "status": status, "compose-secrets": compose_secrets}
    actions.get(args.command, lambda: logs(args.name))()


if __name__ == "__main__":
    main()
