"""`make test-fast` runs without servers, and this plugin makes that true rather than hoped: with
LLMOPS_TEST_FAST=1 every connection from the test process to a platform server's port (Redis, PostgreSQL, MLflow,
the six services) is refused with a message naming the fix. Servers a test starts in its own process on a free
port (fake upstreams, an app in a thread) still work; anything that needs a real server is an integration test
(conftest.py's SERVER_FIXTURES mark most of them by the fixtures they use)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

SERVER_PORTS = frozenset({6379, 5432, 5000, 8000, 8001, 8002, 8003, 8004, 8005})
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _refused(address: Any) -> bool:
    return isinstance(address, tuple) and len(address) >= 2 and address[1] in SERVER_PORTS


def _connect(self: socket.socket, address: Any) -> None:
    if _refused(address):
        raise ConnectionRefusedError(
            f"make test-fast runs without servers, and this test connects to {address[0]}:{address[1]}: "
            "mark it `integration` (or use one of conftest.py's SERVER_FIXTURES)"
        )
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if _refused(address):
        return 111  # ECONNREFUSED
    return _original_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    """Install the guard when the fast suite asked for it."""
    if os.environ.get("LLMOPS_TEST_FAST") == "1":
        socket.socket.connect = _connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
