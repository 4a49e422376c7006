"""MLflow access: the official client over MLflow's REST API, with errors mapped and audit entries mirrored.

MLflow stays the system of record for models, prompts and dataset runs, so its own UI shows what the
registry writes: metadata as version tags, audit entries as `llmops.audit.<seq>` tags on the object.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.registry.errors import RegistryError

T = TypeVar("T")
log = logging.getLogger("llmops.registry.mlflow")

# MLflow codes that mean "no such thing" (the REST API and the client use both spellings).
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"}
_TAG_VALUE_MAX = 5000


class Mlflow:
    """A thin holder of one MlflowClient plus the helpers every service class needs."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout_s: float,
        experiment_prefix: str,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        # The client reads these at call time; without them a down server means minutes of retries (a hang).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout_s))))
        if username and password:
            # MLflow's client takes basic-auth credentials only from these variables (read per request).
            os.environ["MLFLOW_TRACKING_USERNAME"] = username
            os.environ["MLFLOW_TRACKING_PASSWORD"] = password
        self.uri = tracking_uri.rstrip("/")
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment_prefix = experiment_prefix
        self._experiments: dict[str, str] = {}

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the client, turning transport failures into a 503 the caller can show."""
        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if exc.error_code in _NOT_FOUND:
                raise
            # Before the transport check: an artifact write the server keeps failing (5xx, retried by the client)
            # also ends in "Max retries exceeded", but MLflow is answering.
            if _is_disk_full(str(exc)) or _is_failed_artifact_write(str(exc)):
                raise RegistryError(507, "artifact_store_full", _FULL) from exc
            if _is_transport(exc):
                raise RegistryError(503, "mlflow_unavailable", f"MLflow at {self.uri} is not answering") from exc
            raise
        except requests.HTTPError as exc:  # an artifact upload the MLflow server could not store
            if _is_disk_full(str(exc)) or exc.response is None or exc.response.status_code >= 500:
                # MLflow's answer to a failed write rarely says why; a full disk is the usual cause, say so.
                raise RegistryError(507, "artifact_store_full", f"{_FULL} ({str(exc)[:300]})") from exc
            raise

    def find(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Like `call`, but None when MLflow says the object does not exist."""
        try:
            return self.call(fn, *args, **kwargs)
        except MlflowException as exc:
            if exc.error_code in _NOT_FOUND or "not found" in str(exc).lower():
                return None
            raise

    def experiment_id(self, kind: str) -> str:
        """Id of the `<prefix>-<kind>` experiment, created on first use."""
        name = f"{self.experiment_prefix}-{kind}"
        if name not in self._experiments:
            exp = self.find(self.client.get_experiment_by_name, name)
            if exp is None:
                try:
                    self._experiments[name] = self.call(self.client.create_experiment, name)
                except MlflowException:  # another replica created it first
                    again = self.call(self.client.get_experiment_by_name, name)
                    if again is None:
                        raise
                    self._experiments[name] = again.experiment_id
            else:
                self._experiments[name] = exp.experiment_id
        return self._experiments[name]

    def ping(self) -> bool:
        """True when the MLflow server answers a cheap registry call."""
        try:
            self.client.search_registered_models(max_results=1)
            return True
        except Exception:  # readiness must answer, never raise
            return False

    def ui_url(self, entry_object: str) -> str:
        """Where to look at an object in MLflow's UI (best effort, for humans)."""
        kind, _, rest = entry_object.partition("/")
        name = rest.split("/")[0]
        if kind == "model":
            return f"{self.uri}/#/models/{name}"
        if kind == "prompt":
            return f"{self.uri}/#/prompts/{name}"
        return self.uri

    def mirror_audit(self, entry: dict[str, Any], *, run_id: str | None = None) -> bool:
        """Copy one audit entry onto the MLflow object it is about; failures are logged, never raised."""
        key, value = audit_tag(entry)
        kind, _, rest = entry["object_id"].partition("/")
        name = rest.split("/")[0]
        if entry["action"].startswith("tamper."):
            kind = "governance"  # never write into an object someone else changed (or created)
        try:
            if kind == "model":
                self.call(self.client.set_registered_model_tag, name, key, value)
            elif kind == "prompt":
                self.call(self.client.set_prompt_tag, name, key, value)
            elif run_id:
                self.call(self.client.set_tag, run_id, key, value)
            else:
                self.call(self.client.set_experiment_tag, self.experiment_id("governance"), key, value)
            return True
        except Exception:  # the DB entry is authoritative; a missed mirror must not undo a committed change
            log.warning("could not mirror audit entry %s to MLflow", entry["seq"], exc_info=True)
            return False


def audit_tag(entry: dict[str, Any]) -> tuple[str, str]:
    """The `llmops.audit.<seq>` tag an audit entry is mirrored as; drift checks compare MLflow's copy with it."""
    fields = {k: entry[k] for k in ("action", "actor", "ts", "object_id", "reason") if entry.get(k)}
    after = json.dumps(entry.get("after"), default=str)
    # Large payloads (a whole version's metadata) stay in the store; MLflow shows their hash.
    fields["after"] = entry.get("after") if len(after) <= 1500 else {"sha256_of_entry": entry["hash"]}
    return f"llmops.audit.{entry['seq']:06d}", _clip(json.dumps(fields, default=str))


_FULL = "MLflow could not store the artifact: its artifact store is full or not writable; free space there and retry"


def _is_disk_full(text: str) -> bool:
    return "No space left on device" in text or "Errno 28" in text


def _is_failed_artifact_write(text: str) -> bool:
    # An artifact upload the server took but could not store: a 5xx retried to exhaustion, or the connection
    # dropped mid-answer. A refused connection is MLflow down (503), not its store.
    return "mlflow-artifacts" in text and "Connection refused" not in text


def _is_transport(exc: MlflowException) -> bool:
    text = str(exc)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "timed out", "ConnectionError"))


def _clip(value: str) -> str:
    return value if len(value) <= _TAG_VALUE_MAX else value[: _TAG_VALUE_MAX - 3] + "..."


def is_not_found(exc: Exception) -> bool:
    """True when an MLflow exception means the object is missing."""
    return isinstance(exc, MlflowException) and exc.error_code in _NOT_FOUND
