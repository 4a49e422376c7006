"""Defects the API fuzzer found (tests/fuzz, `make fuzz`), each kept closed by a test of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.tests.harness import ADMIN, harness

ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}


@pytest.mark.parametrize("field", ["name", "allowed_models"])
def test_patching_a_key_field_to_null_resets_it_and_keeps_the_key_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """PATCH /admin/keys/{id} with `name: null` answered 503 state_store_unavailable (None cannot be written to
    Redis: not an outage), and `allowed_models: null` was stored as is, after which every read of the key and
    every request made with it answered 500. Null now resets the field: no name, every model."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path) as h:
        key, key_id = h.key(name="ci", allowed_models=["m"])
        patched = h.client.patch(f"/admin/keys/{key_id}", json={field: None}, headers=ADMIN_HEADERS)
        assert patched.status_code == 200, patched.text
        read = h.client.get(f"/admin/keys/{key_id}", headers=ADMIN_HEADERS)
        assert read.status_code == 200, read.text
        assert read.json()[field] == ("" if field == "name" else [])
        assert h.chat(key).status_code == 200
        assert h.client.delete(f"/admin/keys/{key_id}", headers=ADMIN_HEADERS).status_code == 200
