"""Start real service processes (uvicorn) on free ports for tests and benchmarks, and stop them cleanly."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s: {last}")


@contextlib.contextmanager
def server_process(
    cmd: list[str], log_path: Path | None = None, *, env: dict[str, str] | None = None, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process (output to `log_path`, or discarded); terminate it on exit, kill it if it lingers."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def uvicorn_process(
    app: str,
    env: dict[str, str],
    port: int | None = None,
    log_path: Path | None = None,
    workers: int = 1,
    args: tuple[str, ...] = (),
    ready_timeout_s: float = 60.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `uvicorn <app> --factory` in a subprocess; yields its base URL and the process once /readyz is 200
    (with workers > 1 the process is uvicorn's supervisor: SIGHUP makes it replace its workers one by one)."""
    port = port or free_port()
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}", **env}
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", "--workers", str(workers), *args]
    base = f"http://127.0.0.1:{port}"
    with server_process(cmd, log_path, env=full_env) as proc:
        wait_ready(base + "/readyz", timeout_s=ready_timeout_s, proc=proc)
        yield base, proc


@contextlib.contextmanager
def uvicorn_service(
    app: str,
    env: dict[str, str],
    port: int | None = None,
    log_path: Path | None = None,
    workers: int = 1,
    ready_timeout_s: float = 60.0,
) -> Iterator[str]:
    """Run `uvicorn <app> --factory` in a subprocess; yields its base URL once /readyz is 200."""
    with uvicorn_process(app, env, port, log_path, workers, ready_timeout_s=ready_timeout_s) as (base, _):
        yield base
