"""Root conftest: shared fixtures (real services in subprocesses) for every test folder, and the rule that keeps
`make test-fast` free of servers."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.support.fixtures", "tests.support.shuffle", "tests.support.no_servers"]

# Fixtures that reach a real server: Redis (the gateway's and the feedback service's `redis`, and the feedback
# settings factory, whose app consumes the Redis stream), or services started in subprocesses with the real model.
# A test that uses one (directly or through another fixture) is an integration test, whatever its module says,
# so `make test-fast` (-m "not integration and not e2e") never needs a server; it runs with LLMOPS_TEST_FAST=1,
# which refuses every connection to a platform server's port (tests/support/no_servers.py), so it stays true.
SERVER_FIXTURES = frozenset(
    {
        "redis",
        "make_settings",
        "inference_url",
        "start_gateway",
        "gateway",
        "protected_inference",
        "real_gateway",
        "mlflow_server",
        "registry_server",
        "run_registry",
        "pg_database",
        "postgres_database",
        "platform",
    }
)


# Helpers that start a server-backed service in-process: a test module that imports from one needs that server.
SERVER_HELPERS = frozenset({"services.gateway.tests.harness"})  # the gateway on the real Redis


def _uses_server_helper(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and any(getattr(v, "__module__", None) in SERVER_HELPERS for v in vars(module).values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture, or a module built on a server helper, `integration`."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) or _uses_server_helper(item):
            item.add_marker(pytest.mark.integration)
