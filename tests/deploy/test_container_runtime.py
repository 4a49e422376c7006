"""scripts/container_runtime.sh's daemons (podman's API service, the healthcheck ticker) do not keep a caller's lock.

The platform's tests run compose under `flock /tmp/llmops-platform.lock ...`, and flock hands its lock's file
descriptor down to the command. The first run that started the API service left it holding that descriptor, so
the lock stayed taken for as long as podman served, and every later `flock` waited forever. `detach` starts each
daemon with nothing but stdin, stdout and stderr.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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


def _lock_is_free(lock: Path) -> bool:
    return subprocess.run(["flock", "-n", str(lock), "true"], timeout=10).returncode == 0


def test_a_detached_daemon_does_not_hold_the_callers_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    pid = int(_under_flock(lock, "detach /dev/null sleep 60; echo $!").strip())
    try:
        assert Path(f"/proc/{pid}").exists(), "the daemon should outlive the script"
        assert sorted(p.name for p in Path(f"/proc/{pid}/fd").iterdir()) == ["0", "1", "2"]
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
    assert backgrounded == ["  ) &"], backgrounded  # detach's own subshell
    assert sum("detach " in line and "()" not in line for line in lines) == 2
