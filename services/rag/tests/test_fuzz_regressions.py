"""Defects the API fuzzer found (tests/fuzz, `make fuzz`), each kept closed by a test of its own."""

from __future__ import annotations

import httpx
import pytest

from services.rag.tests.test_api import ingest, new_collection

TEXT = "Otters hold hands while they sleep so that they do not drift apart on the water."


@pytest.mark.parametrize(
    ("filters", "found"),
    [
        ({"score": 0.5}, {"half"}),  # a float: Qdrant matches floats only as a range
        ({"score": [0.5, 2.0]}, {"half"}),
        ({"flag": [True]}, {"half"}),  # a list of booleans
        ({"kind": ["otter", 7]}, {"half", "seven"}),  # a mixed list
        ({"flag": [False]}, set()),
    ],
)
def test_filters_of_every_type_the_api_allows_answer_instead_of_500(
    team_a: httpx.Client, filters: dict, found: set[str]
) -> None:
    """Filter values may be str, int, float, bool or a list of them (the schema says so); a float or a list of
    booleans or of mixed types answered 500 (Qdrant's MatchValue/MatchAny take only str/int/bool, str/int lists)."""
    name = new_collection(team_a)
    ingest(
        team_a,
        name,
        [
            {"id": "half", "text": TEXT, "metadata": {"score": 0.5, "flag": True, "kind": "otter"}},
            {"id": "seven", "text": TEXT + " Seven.", "metadata": {"score": 7.0, "flag": "no", "kind": 7}},
        ],
    )
    for route, body in (("query", {"query": "otters"}), ("answer", {"question": "What do otters do?"})):
        response = team_a.post(f"/v1/collections/{name}/{route}", json={**body, "filters": filters})
        assert response.status_code == 200, response.text
        if route == "query":
            assert {p["document_id"] for p in response.json()["passages"]} == found
