"""Dataset registration with the registry service: the request matches its committed OpenAPI contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llmops_common.http import Reply
from llmops_common.registry_client import AsyncRegistryClient
from services.feedback.auth import Principal
from services.feedback.datasets import DatasetExporter
from services.feedback.schemas import ExportIn
from services.feedback.sinks import RegistryRegistrar
from services.feedback.store.store import Store
from tests.support.fake_http import FakeAsyncHTTP, Sent, reply

REGISTRY_OPENAPI = Path(__file__).resolve().parents[2] / "registry" / "openapi.json"


def _check_against_registry_schema(body: dict[str, Any]) -> None:
    """Required fields, no unknown ones, and the string patterns of DatasetVersionCreate."""
    if not REGISTRY_OPENAPI.exists():
        return
    schema = json.loads(REGISTRY_OPENAPI.read_text())["components"]["schemas"]["DatasetVersionCreate"]
    assert set(schema["required"]) <= set(body)
    assert set(body) <= set(schema["properties"])
    for field, spec in schema["properties"].items():
        if field in body and "pattern" in spec:
            assert re.match(spec["pattern"], body[field]), (field, body[field])


async def test_registry_registrar_sends_the_registry_contract(tmp_path: Path) -> None:
    """POST /v1/datasets/{name}/versions with digest, schema, row count and a file URI; returns name@version."""
    seen: list[Sent] = []

    def handler(request: Sent) -> Reply:
        seen.append(request)
        body = json.loads(request.content)
        _check_against_registry_schema(body)
        return reply(201, {"name": "sft", "version": 3, **body})

    path = tmp_path / "sft.jsonl"
    path.write_text('{"messages": []}\n')
    http = FakeAsyncHTTP(handler)
    registrar = RegistryRegistrar(AsyncRegistryClient("http://registry:8003/", "rk_token", http=http))
    record = {"name": "sft", "registry_name": "t1--sft", "version": 1, "sha256": "ab" * 32, "rows": 1}
    ref = await registrar.register(record | {"created_by": "t1/p1/k1"}, path)
    assert ref == "sft@3"
    assert seen[0].path == "/v1/datasets/t1--sft/versions"
    assert "t1/p1/k1" in json.loads(seen[0].content)["description"]  # who asked, not only the service's token
    assert seen[0].headers["authorization"] == "Bearer rk_token"
    assert seen[0].headers["x-llmops-on-behalf-of"] == "t1/p1/k1"  # issue 12 row 8: the registry's created_by
    await registrar.register(record | {"created_by": "admin"}, path)
    assert seen[1].headers["x-llmops-on-behalf-of"] == "feedback-admin"  # never the registry's own `admin`
    await registrar.aclose()
    await http.aclose()


async def test_failed_registration_keeps_the_local_version(tmp_path: Path) -> None:
    """The registry refusing (same hash twice: 409) leaves a valid local dataset version and says so."""
    client = FakeAsyncHTTP(lambda r: reply(409, {"error": {}}))
    store = Store.from_settings(None, tmp_path / "fb.db")
    await store.open()
    try:
        exporter = DatasetExporter(
            store, tmp_path / "exports", RegistryRegistrar(AsyncRegistryClient("http://registry", http=client))
        )
        out = await exporter.export(ExportIn(name="empty"), Principal(key_id="k1", team="t1", project="p1"))
    finally:
        await store.close()
        await client.aclose()
    assert out["registered_in"] == "local" and out["skipped"]["registration_failed"] == 1
    assert out["rows"] == 0 and (tmp_path / "exports" / out["path"]).exists()


@pytest.mark.parametrize("name", ["ok-name", "v1.2_x"])
def test_dataset_names_fit_the_registry(name: str) -> None:
    """Export names are a subset of the registry's dataset names."""
    assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", ExportIn(name=name).name)
