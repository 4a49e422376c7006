"""Fixtures: one in-process app per test session (the models load once), or a remote base URL.

GUARDRAILS_CONTRACT_URL=http://host:port points the contract tests at a running service (a student's
replacement, say), with GUARDRAILS_CONTRACT_TOKEN as its service token (sent as `Authorization: Bearer`);
without a URL they run against this service's app in-process, which requires TOKEN.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.guardrails.app import create_app
from services.guardrails.checker import Checker
from services.guardrails.detectors.loader import load_detectors
from services.guardrails.metrics import GuardrailsMetrics
from services.guardrails.settings import GuardrailsSettings

TOKEN = "guardrails-test-token"  # the in-process app's service token


@pytest.fixture(scope="session")
def contract_url() -> str | None:
    """Base URL of a running service under test, if any."""
    return os.environ.get("GUARDRAILS_CONTRACT_URL") or None


@pytest.fixture(scope="session")
def local_client(contract_url: str | None) -> Iterator[TestClient | None]:
    """This service, in-process, with all models loaded (None when testing a remote URL)."""
    if contract_url:
        yield None
        return
    app = create_app(GuardrailsSettings(service_token=TOKEN))
    with TestClient(app, raise_server_exceptions=False, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture(scope="session")
def api(contract_url: str | None, local_client: TestClient | None) -> Iterator[Any]:
    """An HTTP client for the service under test (same API in both cases)."""
    if contract_url:
        token = os.environ.get("GUARDRAILS_CONTRACT_TOKEN") or ""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=contract_url, timeout=30, headers=headers) as client:
            yield client
    else:
        assert local_client is not None
        yield local_client


@pytest.fixture(scope="session")
def service_client(local_client: TestClient | None) -> TestClient:
    """The in-process app only: tests of this implementation's internals skip for a remote URL."""
    if local_client is None:
        pytest.skip("implementation test; GUARDRAILS_CONTRACT_URL points elsewhere")
    return local_client


@pytest.fixture(scope="session")
def detectors(service_client: TestClient) -> dict:
    """The detectors the in-process app loaded (shared, so models load once)."""
    app: Any = service_client.app
    return app.state.checker.detectors


@pytest.fixture
def fresh_checker(detectors: dict) -> Checker:
    """A checker over the loaded detectors with its own metrics registry."""
    return Checker(detectors, GuardrailsMetrics(CollectorRegistry()))


@pytest.fixture(scope="session")
def light_detectors() -> dict:
    """Detectors loaded without the app, for unit tests that do not need HTTP."""
    return load_detectors(GuardrailsSettings())
