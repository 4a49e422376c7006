"""scripts/container_runtime.sh's daemons (podman's API service, the healthcheck ticker) do not keep a caller's lock.

The platform's tests run compose under `flock /tmp/llmops-platform.lock ...`, and flock hands its lock's file
descriptor down to the command. The first run that started the API service left it holding that descriptor, so
the lock stayed taken for as long as podman served, and every later `flock` waited forever. `detach` starts each
daemon with nothing but stdin, stdout and stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "scripts" / "container_runtime.sh"


def _under_flock(lock: Path, body: str) -> str:
    """Run `body` in bash under `flock lock` with the script's detach() defined; its stdout."""
    define = f'source <(sed -n "/^detach()/,/^}}/p" {SCRIPT})'
    proc = subprocess.run(
        ["flock", str(lock), "bash", "-c", f"{define}\n{body}"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _open_files(pid: int) -> set[str]:
    """What the descriptors of `pid` point to (one closed while being read is skipped)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except FileNotFoundError:
            continue
    return found


def _lock_is_free(lock: Path) -> bool:
    return subprocess.run(["flock", "-n", str(lock), "true"], timeout=10).returncode == 0


def test_a_detached_daemon_does_not_hold_the_callers_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    pid = int(_under_flock(lock, "detach /dev/null sleep 60; echo $DETACHED_PID").strip())
    try:
        assert Path(f"/proc/{pid}").exists(), "the daemon should outlive the script"
        # What it holds, by target: a process that is still starting (the dynamic loader, a redirection) has
        # short-lived descriptors of its own, so the test asks the question that matters, not for exactly 0-2.
        assert str(lock) not in _open_files(pid)
        assert _lock_is_free(lock)
    finally:
        subprocess.run(["kill", str(pid)], check=False)


def test_without_detach_the_lock_stays_taken(tmp_path: Path) -> None:
    """The negative control: what the script did before (setsid nohup ... &) keeps the lock."""
    lock = tmp_path / "lock"
    pid = int(_under_flock(lock, "setsid nohup sleep 60 >/dev/null 2>&1 </dev/null & echo $!").strip())
    try:
        assert not _lock_is_free(lock)
    finally:
        subprocess.run(["kill", str(pid)], check=False)


def test_every_daemon_of_the_script_is_detached() -> None:
    """No background start in the script bypasses detach()."""
    lines = [line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]
    backgrounded = [line for line in lines if re.search(r"&\s*$", line) and "&&" not in line]
    assert backgrounded == ['    setsid nohup "$@" >"$log" 2>&1 </dev/null &'], backgrounded  # detach's own start
    assert sum("detach " in line and "()" not in line for line in lines) == 2


# ---------------------------------------------------------------- a wedged API service is found and restarted

# A Docker API on a unix socket that answers /_ping and /version like podman's, and every container start the way
# a wedged podman 4.3 service does (500 "write child: broken pipe"), or 204 when started with `healthy`. Its
# command line contains "podman system service", as the script checks before it kills the pid it recorded.
FAKE_API = r"""
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler

sock, mode = sys.argv[1], sys.argv[2]

class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body=None):
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path.endswith("/_ping"):
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        elif self.path.endswith("/version"):
            self._answer(200, {"Version": "4.3.1"})
        else:
            self._answer(404, {"message": "no such thing"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if "/containers/create" in self.path:
            self._answer(201, {"Id": "0" * 64, "Warnings": []})
        elif self.path.endswith("/start"):
            if mode == "healthy":
                self._answer(204)
            else:
                self._answer(500, {"cause": "broken pipe", "message": "write child: broken pipe", "response": 500})
        else:
            self._answer(404, {"message": "no such thing"})

    def do_DELETE(self):
        self._answer(204)

class Server(socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("fake", 0)

if os.path.exists(sock):
    os.unlink(sock)
Server(sock, Api).serve_forever()
"""


def _fake_api(tmp_path: Path, mode: str) -> tuple[Path, subprocess.Popen[bytes]]:
    """The fake API serving <tmp>/run/podman.sock; waits until it answers."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (tmp_path / "fake_api.py").write_text(FAKE_API)
    sock = run / "podman.sock"
    proc = subprocess.Popen(
        ["python3", str(tmp_path / "fake_api.py"), str(sock), mode, "podman system service"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ping = ["curl", "-fsS", "--max-time", "2", "--unix-socket", str(sock), "http://d/_ping"]
    for _ in range(100):
        if subprocess.run(ping, capture_output=True, timeout=10).returncode == 0:
            return run, proc
        proc.poll()
        assert proc.returncode is None, "the fake API exited"
        subprocess.run(["sleep", "0.1"], check=True)
    raise AssertionError("the fake API never answered")


def _script(run: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"LLMOPS_PODMAN_SOCKET_DIR": str(run), "PATH": path or os.environ["PATH"], "DOCKER_HOST": ""}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def _fake_podman_on_path(tmp_path: Path) -> str:
    """A `podman` that says every image exists (the probe starts a container only when the base image does)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "podman").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.mark.parametrize(("mode", "status"), [("healthy", 0), ("wedged", 1)])
def test_the_probe_starts_a_container_not_only_pings(tmp_path: Path, mode: str, status: int) -> None:
    """`probe` fails on a service that answers /_ping and /version but cannot start a container."""
    run, proc = _fake_api(tmp_path, mode)
    try:
        probe = _script(run, "probe", path=_fake_podman_on_path(tmp_path))
        assert probe.returncode == status, probe
        if mode == "wedged":
            assert "write child: broken pipe" in (run / "probe.out").read_text()
    finally:
        proc.kill()
        proc.wait()


def test_the_probe_fails_where_nothing_serves(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert _script(tmp_path / "run", "probe", path=_fake_podman_on_path(tmp_path)).returncode == 1


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("podman") is None, reason="needs root and podman")
def test_a_wedged_service_is_restarted(tmp_path: Path) -> None:
    """A wedged service the script started (its pid file) is ended and a real one started in its place, which
    then starts containers; `stop` ends it and the ticker. A private socket folder: the shared service is not
    touched. Needs the base image scripts/container_runtime.sh builds (it is built when missing: minutes)."""
    run, fake = _fake_api(tmp_path, "wedged")
    (run / "service.pid").write_text(f"{fake.pid}\n")
    try:
        started = _script(run)
        assert started.returncode == 0, started.stderr
        assert "cannot start a container" in started.stderr and "restarting it" in started.stderr, started.stderr
        assert fake.wait(timeout=30) is not None  # the wedged service was ended
        assert f"DOCKER_HOST=unix://{run}/podman.sock" in started.stdout.splitlines()
        new_pid = int((run / "service.pid").read_text())
        assert new_pid != fake.pid and "podman" in Path(f"/proc/{new_pid}/cmdline").read_text()
        assert _script(run, "probe").returncode == 0
        again = _script(run)  # idempotent: a healthy service is kept
        assert again.returncode == 0 and "restarting" not in again.stderr and "starting" not in again.stderr, again
        assert int((run / "service.pid").read_text()) == new_pid
    finally:
        _script(run, "stop")
        if fake.poll() is None:
            fake.kill()
