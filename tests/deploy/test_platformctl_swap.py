"""`make up GUARDRAILS_APP=...`: the command lines platformctl builds, checked without starting anything."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"gateway": 8000, "inference": 8001, "rag": 8002, "registry": 8003, "feedback": 8004, "guardrails": 8005}
EXAMPLE = "examples.minimal_guardrails.app:create_app"


@pytest.fixture
def platformctl(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/platformctl.py as a module, with no swap set in the environment."""
    for name in SERVICES:
        monkeypatch.delenv(f"{name.upper()}_APP", raising=False)
    spec = importlib.util.spec_from_file_location("platformctl_under_test", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _procs(platformctl: ModuleType) -> dict:
    secrets = {name: name[:3] for name in platformctl.GENERATED_SECRETS}
    return {p.name: p for p in platformctl.processes(secrets)}


def _app_of(cmd: list[str]) -> str:
    return cmd[cmd.index("uvicorn") + 1]


def test_without_a_swap_every_service_is_the_platforms(platformctl: ModuleType) -> None:
    procs = _procs(platformctl)
    for name, proc in procs.items():
        if name in SERVICES:
            assert _app_of(proc.cmd) == f"services.{name}.app:create_app"
            assert proc.cmd[proc.cmd.index("--port") + 1] == str(SERVICES[name])


def test_guardrails_app_runs_the_replacement_on_the_same_port(
    platformctl: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAILS_APP", EXAMPLE)
    procs = _procs(platformctl)
    guard = procs["guardrails"]
    assert guard.cmd[:3] == [sys.executable, "-m", "uvicorn"] and _app_of(guard.cmd) == EXAMPLE
    assert "--factory" in guard.cmd and guard.cmd[guard.cmd.index("--port") + 1] == "8005"
    assert guard.ready_url == "http://127.0.0.1:8005/readyz"
    assert procs["gateway"].env["GATEWAY_GUARDRAILS_URL"] == "http://127.0.0.1:8005"
    assert _app_of(procs["gateway"].cmd) == "services.gateway.app:create_app", "only guardrails is swapped"


def test_a_command_line_replaces_a_service_in_any_language(
    platformctl: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAILS_APP", "./bin/my-guardrails --listen '127.0.0.1:8005'")
    assert _procs(platformctl)["guardrails"].cmd == ["./bin/my-guardrails", "--listen", "127.0.0.1:8005"]


def test_an_empty_setting_is_no_swap(platformctl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export GUARDRAILS_APP` in the Makefile passes an empty value when it is not set."""
    monkeypatch.setenv("GUARDRAILS_APP", " ")
    assert _app_of(_procs(platformctl)["guardrails"].cmd) == "services.guardrails.app:create_app"


def test_a_running_service_started_differently_is_restarted(
    platformctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make up GUARDRAILS_APP=...` on a running platform swaps that one process: up() sees its recorded command."""
    monkeypatch.setattr(platformctl, "RUN", tmp_path)
    (tmp_path / "guardrails.cmd").write_text('["python", "-m", "uvicorn", "services.guardrails.app:create_app"]')
    assert platformctl._started_with("guardrails")[-1] == "services.guardrails.app:create_app"
    monkeypatch.setenv("GUARDRAILS_APP", EXAMPLE)
    assert platformctl._started_with("guardrails") != _procs(platformctl)["guardrails"].cmd
    assert platformctl._started_with("feedback") is None  # unknown: left running, as before
