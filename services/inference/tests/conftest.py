"""The inference service as the platform runs it: the real model behind the service token (issue 12 row 5)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.servers import uvicorn_service


@dataclass(frozen=True)
class Inference:
    """A running inference service and the token it accepts."""

    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """What a platform service sends: the token as a bearer."""
        return {"authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def protected_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inference]:
    """The real SmolLM2 service with INFERENCE_SERVICE_TOKEN set (the shared `inference_url` runs in dev mode)."""
    token = "test-inference-" + secrets.token_urlsafe(16)
    env = {
        "INFERENCE_SERVICE_TOKEN": token,
        "INFERENCE_MAX_RUNNING": "2",
        "INFERENCE_MAX_QUEUED": "8",
        "INFERENCE_PARALLEL_SLOTS": "2",
    }
    log = tmp_path_factory.mktemp("logs") / "inference-protected.log"
    with uvicorn_service("services.inference.app:create_app", env, log_path=log) as url:
        yield Inference(url, token)
