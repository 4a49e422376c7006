"""Where the injection model comes from: the registry's `guardrails-injection@production`, else the package.

The registry (services/registry) holds model versions; the artifact URI of a version points at
`injection_model.json`, with `injection_model.safetensors` beside it (`file://` for a shared volume,
`https://` for an artifact server). A watcher thread polls the alias and swaps the detector's model when a
new version is promoted, without a restart. When the registry cannot be reached at start the packaged
artifact serves, and the log says so loudly: a guardrail silently running an old model is how incidents start.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from llmops_common.registry_client import RegistryError
from services.guardrails.detectors.injection_model import WEIGHTS_FILE, InjectionModel

log = logging.getLogger("llmops.guardrails")
REGISTERED_MODEL = "guardrails-injection"


class ModelRegistry(Protocol):
    """What the loader needs from the registry: llmops_common's RegistryClient, or a fake in unit tests."""

    def model_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        """The model version an alias points at (the registry's ModelVersion JSON); None when not set."""
        ...

    def fetch(self, uri: str) -> bytes:
        """The bytes at an artifact URI."""
        ...


def resolve_version(client: ModelRegistry, name: str, alias: str) -> dict[str, Any]:
    """The version `name@alias` points at; an unset alias is an error here (there is nothing to load)."""
    version = client.model_alias(name, alias)
    if version is None:
        raise RegistryError(f"{name}@{alias} is not set in the registry", status=404)
    return version


def weights_uri(model_uri: str) -> str:
    """The weights file beside the model JSON."""
    return model_uri.rsplit("/", 1)[0] + "/" + WEIGHTS_FILE


def load_version(client: ModelRegistry, version: dict[str, Any]) -> InjectionModel:
    """Fetch and verify one registered version (the JSON's sha256 tag, then the weights' sha256)."""
    uri = version["artifact_uri"]
    meta_raw = client.fetch(uri)
    expected = (version.get("tags") or {}).get("model_json_sha256")
    if expected and hashlib.sha256(meta_raw).hexdigest() != expected:
        raise ValueError(f"{uri}: sha256 differs from the registered model_json_sha256")
    return InjectionModel.from_bytes(meta_raw, client.fetch(weights_uri(uri)), version=str(version["version"]))


def resolve_model(
    client: ModelRegistry | None, packaged: Callable[[], InjectionModel], name: str, alias: str
) -> InjectionModel:
    """The registry's version when it answers, else the packaged artifact (logged at ERROR level)."""
    if client is None:
        return packaged()
    try:
        return load_version(client, resolve_version(client, name, alias))
    except Exception as exc:  # any failure means "serve the packaged model", loudly
        log.error(
            "REGISTRY UNAVAILABLE: serving the PACKAGED injection model instead of %s@%s (%s: %s)",
            name, alias, type(exc).__name__, exc,
        )  # fmt: skip
        return packaged()


class ModelWatcher:
    """Polls the alias every `poll_s` seconds and swaps the model into `apply` when the version changes."""

    def __init__(
        self,
        client: ModelRegistry,
        name: str,
        alias: str,
        current: str,
        apply: Callable[[InjectionModel], None],
        poll_s: float = 30.0,
    ) -> None:
        self.client, self.name, self.alias, self.current = client, name, alias, current
        self.apply = apply
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="guardrails-model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        """Start polling in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (waits for the thread) and close the client's connections."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def poll_once(self) -> bool:
        """One check; True when a new version was loaded and applied."""
        try:
            version = resolve_version(self.client, self.name, self.alias)
            if str(version["version"]) == self.current:
                return False
            model = load_version(self.client, version)
        except Exception as exc:  # keep serving the current model; retry next poll
            log.warning(
                "injection model poll failed; keeping version %s (%s: %s)", self.current, type(exc).__name__, exc
            )
            return False
        self.apply(model)
        log.info("injection model swapped", extra={"from": self.current, "to": model.version})
        self.current = model.version
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll_once()
