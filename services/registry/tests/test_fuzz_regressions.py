"""Defects the API fuzzer found (tests/fuzz, `make fuzz`), each kept closed by a test of its own."""

from __future__ import annotations

import httpx

from services.registry.tests.conftest import ADMIN_TOKEN


def test_an_audit_page_past_sql_bigint_is_a_400_not_a_500(base_url: str) -> None:
    """`after_seq` was unbounded: past 2**63-1 the database driver could not bind it and /v1/audit answered 500."""
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as admin:
        too_far = admin.get("/v1/audit", params={"after_seq": 2**112})
        assert too_far.status_code == 400, too_far.text
        assert too_far.json()["error"]["code"] == "invalid_request"
        last = admin.get("/v1/audit", params={"after_seq": 2**63 - 1})
        assert last.status_code == 200 and last.json() == []
