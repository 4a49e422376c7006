"""The services the fuzzer attacks, each a private process on a free port with its real dependencies where they are
cheap (the shared Redis under a prefix of its own, SQLite, Qdrant local mode, a private MLflow server) and a FAKE
OpenAI upstream behind the gateway and inference (the fuzzer tests the services' HTTP surface, not a model).

Every target names the callers it is fuzzed as: the admin for admin routes, a team's gateway key for user routes, a
service token for internal ones. Nothing here touches the shared platform (`make up`): other ports, other data.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import yaml

from tests.support.fake_upstream import FakeUpstream, fake_upstream_in_thread
from tests.support.fixtures import REDIS_URL
from tests.support.servers import REPO, uvicorn_service

ADMIN = "fuzz-admin-token-0123456789"
SERVICE_TOKEN = "fuzz-service-token-0123456789"
MODEL = "fake-model"
SERVICES = ("gateway", "inference", "guardrails", "rag", "feedback", "registry")


@dataclass(frozen=True)
class Caller:
    """One identity the fuzzer sends, and the operations (path regex) it is used for."""

    name: str
    token: str
    paths: str  # a regular expression over the operation's path


@dataclass
class Target:
    """A running service under fuzz."""

    service: str
    url: str
    callers: list[Caller] = field(default_factory=list)

    @property
    def schema(self) -> Path:
        """The committed OpenAPI document: what the fuzzer generates from and checks the answers against."""
        return REPO / "services" / self.service / "openapi.json"


class FuzzPlatform:
    """Starts each service the first time a test asks for it; stops them all on close."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stack = ExitStack()
        self.prefix = f"test:fuzz:{secrets.token_hex(4)}"
        self.targets: dict[str, Target] = {}
        self._upstream: FakeUpstream | None = None
        self._gateway_key = ""
        self._mlflow_url = ""

    def close(self) -> None:
        self.stack.close()
        cleanup = redis.Redis.from_url(REDIS_URL)
        try:
            for key in cleanup.scan_iter(match=f"{self.prefix}:*", count=1000):
                cleanup.delete(key)
        finally:
            cleanup.close()

    def get(self, service: str) -> Target:
        """The running target of `service`, started now if it is not yet."""
        if service not in self.targets:
            self.targets[service] = getattr(self, f"_start_{service}")()
        return self.targets[service]

    def _serve(self, service: str, env: dict[str, str]) -> str:
        # A generous start deadline: RAG loads its embedder, guardrails its models; minutes on a loaded machine.
        log = self.folder / f"{service}.log"
        return self.stack.enter_context(
            uvicorn_service(f"services.{service}.app:create_app", env, log_path=log, ready_timeout_s=300)
        )

    def _upstream_url(self) -> str:
        if self._upstream is None:
            self._upstream = self.stack.enter_context(fake_upstream_in_thread())
        return f"http://127.0.0.1:{self._upstream.port}/v1"

    def _start_gateway(self) -> Target:
        routes = self.folder / "routes.yaml"
        model = {
            "name": MODEL,
            "price": {"input_per_1m": 1.0, "output_per_1m": 2.0},
            "deployments": [{"name": "fake", "url": self._upstream_url(), "model": MODEL}],
        }
        routes.write_text(yaml.safe_dump({"models": [model]}))
        url = self._serve(
            "gateway",
            {
                "GATEWAY_ADMIN_KEY": ADMIN,
                "GATEWAY_REDIS_URL": REDIS_URL,
                "GATEWAY_REDIS_PREFIX": self.prefix,
                "GATEWAY_ROUTES_FILE": str(routes),
                "GATEWAY_EVENTS_STREAM": f"{self.prefix}:events",
                "GATEWAY_GUARDRAILS_URL": "",
            },
        )
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30) as admin:
            admin.post("/admin/teams", json={"team": "fuzz-team"}).raise_for_status()
            response = admin.post("/admin/keys", json={"team": "fuzz-team"})
            response.raise_for_status()
            self._gateway_key = str(response.json()["key"])
        return Target(
            "gateway",
            url,
            [Caller("admin", ADMIN, "^/(admin|healthz|readyz)"), Caller("key", self._gateway_key, "^/(v1|healthz)")],
        )

    def _key(self) -> tuple[str, str]:
        """The gateway's URL and a team key it resolves (RAG and feedback ask the gateway who a key is)."""
        gateway = self.get("gateway")
        return gateway.url, self._gateway_key

    def _start_inference(self) -> Target:
        url = self._serve(
            "inference",
            {
                "INFERENCE_ENGINE": "openai",
                "INFERENCE_UPSTREAM_URL": self._upstream_url(),
                "INFERENCE_SERVED_MODEL_NAME": MODEL,
                "INFERENCE_SERVICE_TOKEN": SERVICE_TOKEN,
                "INFERENCE_REGISTRY_URL": "",
            },
        )
        return Target("inference", url, [Caller("service", SERVICE_TOKEN, ".*")])

    def _start_guardrails(self) -> Target:
        url = self._serve("guardrails", {"GUARDRAILS_SERVICE_TOKEN": SERVICE_TOKEN, "GUARDRAILS_REGISTRY_URL": ""})
        return Target("guardrails", url, [Caller("service", SERVICE_TOKEN, ".*")])

    def _start_rag(self) -> Target:
        gateway_url, key = self._key()
        url = self._serve(
            "rag",
            {
                "RAG_DATA_DIR": str(self.folder / "rag"),
                "RAG_GATEWAY_URL": gateway_url,
                "RAG_LLM_MODEL": MODEL,
                "RAG_LLM_MAX_TOKENS": "16",
                "RAG_SERVICE_TOKEN": SERVICE_TOKEN,
                "RAG_QDRANT_URL": "",
                "RAG_REGISTRY_URL": "",
                "RAG_GUARDRAILS_URL": "",
                "RAG_MLFLOW_TRACKING_URI": "",
            },
        )
        user = Caller("key", key, "^/(v1/(collections|jobs)|healthz|readyz)")
        return Target("rag", url, [user, Caller("service", SERVICE_TOKEN, "^/v1/prompts")])

    def _start_feedback(self) -> Target:
        gateway_url, key = self._key()
        url = self._serve(
            "feedback",
            {
                "FEEDBACK_REDIS_URL": REDIS_URL,
                "FEEDBACK_STREAM_KEY": f"{self.prefix}:events",
                "FEEDBACK_DATABASE_URL": f"sqlite:///{self.folder / 'feedback.db'}",
                "FEEDBACK_GATEWAY_URL": gateway_url,
                "FEEDBACK_ADMIN_TOKEN": ADMIN,
                "FEEDBACK_DRIFT_ENABLED": "false",
                "FEEDBACK_EXPORT_DIR": str(self.folder / "exports"),
            },
        )
        return Target("feedback", url, [Caller("admin", ADMIN, ".*"), Caller("key", key, "^/v1")])

    def _start_registry(self) -> Target:
        from services.registry.tests.conftest import ADMIN_TOKEN, run_mlflow, run_registry

        mlflow_folder = self.folder / "mlflow"
        mlflow_folder.mkdir()
        registry_folder = self.folder / "registry"
        registry_folder.mkdir()
        mlflow = self.stack.enter_context(run_mlflow(mlflow_folder))
        registry = self.stack.enter_context(run_registry(registry_folder, mlflow.url))
        return Target("registry", registry.url, [Caller("admin", ADMIN_TOKEN, ".*")])


@contextmanager
def fuzz_platform(folder: Path) -> Iterator[FuzzPlatform]:
    """A FuzzPlatform, closed (processes stopped, Redis keys deleted) on exit."""
    platform = FuzzPlatform(folder)
    try:
        yield platform
    finally:
        platform.close()
