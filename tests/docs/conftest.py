"""The platform for the documentation's end-to-end tests, started exactly as `make up` starts it (local mode).

One start serves every test of this folder (package scope) and is stopped after the last of them, so the rest of
the suite does not share the machine's two cores with an idle platform.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs.helpers import ROOT, platform_env, reachable


def _platformctl() -> ModuleType:
    """scripts/platformctl.py (what `make up` runs), loaded for its list of processes and where it keeps pids."""
    spec = importlib.util.spec_from_file_location("platformctl", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _make(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # `-o install`: the suite already runs inside the installed venv, so only the target's own command runs
    # (the same one `make up` runs after its install step); PY= keeps the services on this interpreter.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install", *args, "MODE=local", f"PY={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="package")
def platform() -> Iterator[dict[str, str]]:
    """The running platform's LLMOPS_* settings: reused when it is up, else started (and then stopped) here."""
    ctl = _platformctl()
    procs = ctl.processes(defaultdict(str))  # the secrets only fill in environment values, unused here
    if (ROOT / ".llmops" / "env").exists() and all(reachable(p.ready_url) for p in procs):
        yield platform_env()  # a developer's platform: used as it is, and left running
        return
    if shutil.which("make") is None:
        pytest.fail("the end-to-end documentation tests start the platform with `make up`; install make", pytrace=False)
    ours = {p.name for p in procs if _alive(ctl.RUN / f"{p.name}.pid")}
    strangers = [
        f"{_port(p.ready_url)} ({p.name})" for p in procs if p.name not in ours and _port_open(_port(p.ready_url))
    ]
    if strangers:
        pytest.fail(
            "cannot start the platform: these ports are taken by programs that `make up` did not start: "
            + ", ".join(strangers)
            + ". Stop them (or run `make down` if an older checkout started them) and re-run.",
            pytrace=False,
        )
    started = time.monotonic()
    try:
        result = _make("up", timeout=900)
    except subprocess.TimeoutExpired as exc:
        result = subprocess.CompletedProcess(exc.cmd, -1, "", f"timed out after {exc.timeout:.0f}s; see .llmops/logs/")
    if result.returncode != 0:
        if not ours:
            _make("down", timeout=120)
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        pytest.fail(f"`make up` failed ({result.returncode}):\n{output}", pytrace=False)
    print(f"\nplatform started by `make up` in {time.monotonic() - started:.0f}s")
    try:
        yield platform_env()
    finally:
        if not ours:  # started here from nothing: leave nothing behind
            _make("down", timeout=120)


@pytest.fixture(scope="package", autouse=True)
def learner_shell() -> Iterator[None]:
    """The pages' commands run as in a learner's fresh shell: without MLflow credentials other test packages set
    for their own servers (the registry tests export their MLflow admin login into this process)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            patch.delenv(name, raising=False)
        yield
