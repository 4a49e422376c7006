"""Defects the API fuzzer found (tests/fuzz, `make fuzz`), each kept closed by a test of its own."""

from __future__ import annotations

from typing import Any

import httpx

from services.feedback.app import create_app
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import serve


async def test_an_offset_past_sql_bigint_is_a_400_not_a_500(make_settings: Any) -> None:
    """`offset` was unbounded: past 2**63-1 the database driver could not bind it and the listing answered 500."""
    headers = {"authorization": f"Bearer {ADMIN}"}
    async with serve(create_app(make_settings())) as url, httpx.AsyncClient(base_url=url, headers=headers) as admin:
        for route in ("/v1/requests", "/v1/feedback"):
            too_far = await admin.get(route, params={"offset": 2**64})
            assert too_far.status_code == 400, too_far.text
            assert too_far.json()["error"]["code"] == "invalid_request"
            last = await admin.get(route, params={"offset": 2**63 - 1})
            assert last.status_code == 200 and last.json()["data"] == []
