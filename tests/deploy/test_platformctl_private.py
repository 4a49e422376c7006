"""A private platform beside `make up` (LLMOPS_STATE_DIR, LLMOPS_PORT_OFFSET: the soak, load and rolling-restart
runs) and the gateway's workers (GATEWAY_WORKERS): the processes platformctl builds, checked without starting any."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PORTS = {5000, 6379, 8000, 8001, 8002, 8003, 8004, 8005}


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """scripts/platformctl.py as a module, loaded under the given environment variables."""

    def loader(**env: str) -> ModuleType:
        for name in ("LLMOPS_STATE_DIR", "LLMOPS_PORT_OFFSET", "GATEWAY_WORKERS", "GATEWAY_APP", "RAG_APP"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        spec = importlib.util.spec_from_file_location("platformctl_private", ROOT / "scripts" / "platformctl.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return loader


def procs(ctl: ModuleType) -> dict:
    return {p.name: p for p in ctl.processes({name: name[:3] for name in ctl.GENERATED_SECRETS})}


def ports_named(proc: object) -> set[int]:
    """Every loopback port a process is started with or told about (command line, readiness URL, environment)."""
    text = " ".join([*proc.cmd, proc.ready_url, *proc.env.values(), *proc.seed_env.values()])  # type: ignore[attr-defined]
    found = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    cmd = proc.cmd  # type: ignore[attr-defined]
    if "--port" in cmd:
        found.add(int(cmd[cmd.index("--port") + 1]))
    return found | {int(v) for k, v in proc.env.items() if k.endswith("_PORT")}  # type: ignore[attr-defined]


def test_by_default_the_platform_is_where_it_always_was(load: Callable[..., ModuleType]) -> None:
    ctl = load()
    assert ctl.STATE == ROOT / ".llmops" and ctl.redis_url() == "redis://127.0.0.1:6379/0"
    for proc in procs(ctl).values():
        assert ports_named(proc) <= PLATFORM_PORTS, proc.name
        assert ctl.private_env(proc.name) == {}  # the services' own defaults: fingerprints unchanged
        assert "--workers" not in proc.cmd


def test_an_offset_platform_names_no_port_of_the_usual_one(load: Callable[..., ModuleType], tmp_path: Path) -> None:
    state = tmp_path / "state"
    ctl = load(LLMOPS_STATE_DIR=str(state), LLMOPS_PORT_OFFSET="20000")
    assert (state, state / "run") == (ctl.STATE, ctl.RUN)
    assert ctl.redis_url() == "redis://127.0.0.1:26379/0"
    for proc in procs(ctl).values():
        ports = ports_named(proc)
        assert ports and ports <= {p + 20000 for p in PLATFORM_PORTS}, (proc.name, ports)


def test_an_offset_platform_keeps_every_data_file_and_redis_key_in_its_own_state(
    load: Callable[..., ModuleType], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    ctl = load(LLMOPS_STATE_DIR=str(state), LLMOPS_PORT_OFFSET="1000")
    by_name = procs(ctl)
    assert by_name["mlflow"].env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{state}/data/mlflow/mlflow.db"
    assert by_name["mlflow"].seed_env["REGISTRY_DATABASE_URL"] == f"sqlite:///{state}/data/registry/registry.db"
    assert by_name["registry"].env["REGISTRY_DATABASE_URL"] == f"sqlite:///{state}/data/registry/registry.db"
    assert by_name["rag"].env["RAG_DATA_DIR"] == str(state / "data" / "rag")
    assert by_name["feedback"].env["FEEDBACK_SQLITE_PATH"].startswith(str(state))
    assert by_name["feedback"].env["FEEDBACK_REDIS_URL"] == "redis://127.0.0.1:7379/0"  # its stream reader too
    assert by_name["rag"].env["RAG_EVENTS_REDIS_URL"] == "redis://127.0.0.1:7379/0"
    for proc in by_name.values():
        assert str(ROOT / ".llmops") not in " ".join(proc.env.values()), proc.name


def test_two_gateway_workers_get_a_roll_that_can_finish_and_a_drain(load: Callable[..., ModuleType]) -> None:
    gateway = procs(load(GATEWAY_WORKERS="2"))["gateway"]
    cmd = gateway.cmd
    assert cmd[cmd.index("--workers") + 1] == "2"
    # uvicorn's default (5 s) abandons a roll when a new worker starts slower than that (a loaded machine).
    assert int(cmd[cmd.index("--timeout-worker-healthcheck") + 1]) >= 30
    assert float(gateway.env["GATEWAY_SHUTDOWN_DRAIN_S"]) > 0
    other = procs(load(GATEWAY_WORKERS="2"))["rag"]
    assert "--workers" not in other.cmd  # only the gateway is replicated this way


@pytest.mark.parametrize("value", ["0", "abc", "17"])
def test_a_bad_worker_count_is_refused(load: Callable[..., ModuleType], value: str) -> None:
    with pytest.raises(SystemExit, match="GATEWAY_WORKERS"):
        procs(load(GATEWAY_WORKERS=value))
