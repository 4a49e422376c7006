"""Route table parsing, deployment order, circuit breaker transitions, and cost arithmetic."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from services.gateway.pricing import Price, nano_to_usd, usd_to_nano
from services.gateway.routing import CircuitBreaker, RouteConfigError, RouteTable, expand_env, plan


def _table(deployments: list[dict]) -> RouteTable:
    return RouteTable.from_dict({"models": [{"name": "m", "price": {"input_per_1m": 1}, "deployments": deployments}]})


def test_plan_orders_by_priority_then_weight() -> None:
    table = _table(
        [
            {"name": "backup", "url": "http://b/v1", "priority": 1},
            {"name": "big", "url": "http://a/v1", "priority": 0, "weight": 3},
            {"name": "small", "url": "http://c/v1", "priority": 0, "weight": 1},
        ]
    )
    route = table.get("m")
    assert route is not None
    rng = random.Random(7)
    firsts = Counter(plan(route, rng)[0].name for _ in range(4000))
    assert set(firsts) == {"big", "small"}
    assert 0.70 < firsts["big"] / 4000 < 0.80  # weight 3:1
    assert all(plan(route, rng)[-1].name == "backup" for _ in range(50))


def test_module_9_canary_routes_send_a_tenth_to_the_canary(tmp_path: Path) -> None:
    """The canary routes file of docs/modules/09 (two deployments of one model, weights 90 and 10) is a valid routes
    file, and the gateway sends about 10 % of requests to the canary first (the other stays its fallback)."""
    import re

    page = Path(__file__).resolve().parents[3] / "docs" / "modules" / "09-bonus-training-and-fine-tuning.md"
    block = re.search(r"<!-- canary-routes -->\n```yaml\n(.*?)\n```", page.read_text(), re.S)
    assert block, "the canary routes block of module 9 is missing"
    (tmp_path / "routes.yaml").write_text(block.group(1))
    route = RouteTable.from_file(tmp_path / "routes.yaml").get("smollm2-135m-instruct")
    assert route is not None and [d.name for d in route.deployments] == ["production", "canary"]
    rng = random.Random(18)
    plans = [plan(route, rng) for _ in range(5000)]
    share = Counter(p[0].name for p in plans)["canary"] / len(plans)
    assert 0.085 < share < 0.115, share  # weight 10 of 100, a binomial 95 % band at n=5000 is about +-0.8 points
    assert all({d.name for d in p} == {"production", "canary"} for p in plans)  # each is the other's fallback


def test_env_expansion_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_X", "http://x:9/v1")
    assert expand_env("${UPSTREAM_X} ${MISSING:-dflt} ${MISSING}") == "http://x:9/v1 dflt "


def test_routes_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text("models:\n  - name: m\n    deployments: []\n")
    with pytest.raises(RouteConfigError, match="deployments: List should have at least 1 item"):
        RouteTable.from_file(bad)
    with pytest.raises(RouteConfigError, match="cannot read"):
        RouteTable.from_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"models": [{"name": "m", "deployments": [{"url": "http://a/v1", "timout_s": 5}]}]},
            "models[0].deployments[0]: unknown key 'timout_s' (did you mean 'timeout_s'?)",
        ),
        (
            {"models": [{"name": "m", "prise": {"input_per_1m": 1}, "deployments": [{"url": "http://a/v1"}]}]},
            "models[0]: unknown key 'prise' (did you mean 'price'?)",
        ),
        ({"defaults": {"retires": 2}, "models": []}, "defaults: unknown key 'retires' (did you mean 'retries'?)"),
        ({"modles": []}, "unknown key 'modles' (did you mean 'models'?)"),
        (
            {"models": [{"name": "m", "price": {"input_per_1m": -1}, "deployments": [{"url": "http://a/v1"}]}]},
            "models[0].price.input_per_1m",
        ),
        (
            {"models": [{"name": "m", "extra_fields": ["max_tokens"], "deployments": [{"url": "http://a/v1"}]}]},
            "standard field",
        ),
        ({"models": [{"name": "m", "deployments": [{"name": "no-url"}]}]}, "needs a url"),
    ],
)
def test_routes_file_is_typed_and_names_the_closest_key(doc: dict, expected: str) -> None:
    """Issue 19: a typo in the routes file stops the start, naming the key and the closest valid name."""
    with pytest.raises(RouteConfigError) as err:
        RouteTable.from_dict(doc)
    assert expected in str(err.value)


def test_route_options_and_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 5: a deployment's key comes from the variable it names (GATEWAY_INFERENCE_TOKEN for ours)."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "tok")
    table = RouteTable.from_dict(
        {
            "models": [
                {
                    "name": "m",
                    "extra_fields": ["top_k"],
                    "max_n": 2,
                    "content_parts": ["image_url"],
                    "deployments": [{"url": "http://a/v1", "api_key_env": "GATEWAY_INFERENCE_TOKEN"}],
                }
            ]
        }
    )
    route = table.get("m")
    assert route is not None and route.deployments[0].api_key == "tok"
    assert route.extra_fields == {"top_k"} and route.max_n == 2 and route.content_parts == {"text", "image_url"}


def test_shipped_routes_file_parses() -> None:
    from services.gateway.settings import DEFAULT_ROUTES

    table = RouteTable.from_file(DEFAULT_ROUTES)
    route = table.get("smollm2-135m-instruct")
    assert route is not None and route.deployments[0].url.endswith("/v1")


def test_circuit_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == CircuitBreaker.CLOSED
    breaker.record_failure()
    assert breaker.state == CircuitBreaker.OPEN and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == CircuitBreaker.HALF_OPEN
    assert breaker.allow()  # the single probe
    assert not breaker.allow()  # nobody else while it is in flight
    breaker.record_failure()  # probe failed: open again for a full cool-down
    assert breaker.state == CircuitBreaker.OPEN
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CircuitBreaker.CLOSED and breaker.allow()


def test_cost_in_nano_usd_rounds_up() -> None:
    price = Price(input_per_1m=0.10, output_per_1m=0.20)
    assert price.cost_nano(1_000_000, 0) == usd_to_nano(0.10)
    assert price.cost_nano(1_000_000, 1_000_000) == usd_to_nano(0.30)
    assert price.cost_nano(1, 0) == 100  # $0.10 / 1M = 100 nano-USD per token
    assert Price(0.15, 0).cost_nano(1, 0) == 150
    assert Price(0.0000001, 0).cost_nano(1, 0) == 1  # never rounds a paid request down to free
    assert nano_to_usd(usd_to_nano(1.5)) == 1.5
