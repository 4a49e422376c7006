"""A private redis-server on a free port, so the Redis on :6379 that every other test and helper shares is never
disturbed: one a test may stop, restart and freeze (SIGSTOP) on purpose (`fault_redis`, data survives a restart),
or one started with its own configuration, e.g. a tiny maxmemory (`private_redis`, nothing kept on disk)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.servers import free_port


class FaultRedis:
    """One redis-server process at a fixed port and data folder: `stop()` then `start()` is "down, then back"."""

    def __init__(self, binary: str, folder: Path, *args: str, persistent: bool = True) -> None:
        self.binary = binary
        self.folder = folder
        self.args = args
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.folder)]
        if self.persistent:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]  # keys minted before a restart must survive it
        else:
            cmd += ["--appendonly", "no"]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut it down (it writes its AOF); connections are refused until `start()`."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing is ever answered (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextmanager
def fault_redis(*args: str, persistent: bool = True) -> Iterator[FaultRedis]:
    """A started FaultRedis (redis-server with `args`); always stopped (and thawed) at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/ensure_services.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="fault-redis-") as folder:
        server = FaultRedis(binary, Path(folder), *args, persistent=persistent)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def private_redis(*args: str) -> Iterator[tuple[str, int]]:
    """Start `redis-server` with `args` on a free loopback port (no persistence); yield (url, port), then stop it."""
    with fault_redis(*args, persistent=False) as server:
        yield server.url, server.port
