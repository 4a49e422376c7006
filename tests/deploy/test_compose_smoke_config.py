"""The compose smoke override (deploy/compose/compose.smoke.yaml), resolved by the real Docker Compose: it only
trims what the smaller stack lacks and leaves every other setting of compose.yaml as it is."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import COMPOSE_DIR, compose_cmd, run

SMOKE = COMPOSE_DIR / "compose.smoke.yaml"


def test_smoke_gateway_waits_only_for_its_request_path() -> None:
    """The gateway depends on Redis, inference and guardrails, and inference on nothing (no registry, so no seed,
    in the smoke: it serves the packaged model); images, ports and secrets are compose.yaml's."""
    full = json.loads(run(compose_cmd("config", "--format", "json")).stdout)["services"]
    smoke = json.loads(run(compose_cmd("config", "--format", "json", override=SMOKE)).stdout)["services"]
    assert set(smoke["gateway"]["depends_on"]) == {"redis", "inference", "guardrails"}
    assert smoke["gateway"]["environment"]["GATEWAY_REGISTRY_URL"] == ""
    assert (
        not smoke["inference"].get("depends_on") and smoke["inference"]["environment"]["INFERENCE_REGISTRY_URL"] == ""
    )
    for name in ("gateway", "inference", "guardrails"):
        assert smoke[name]["environment"]["OTEL_TRACES_EXPORTER"] == "none"
        assert smoke[name]["image"] == full[name]["image"] and smoke[name].get("ports") == full[name].get("ports")
        unchanged = {
            k: v
            for k, v in full[name]["environment"].items()
            if k not in {"OTEL_TRACES_EXPORTER", "GATEWAY_REGISTRY_URL", "INFERENCE_REGISTRY_URL"}
        }
        assert unchanged.items() <= smoke[name]["environment"].items()
        # The one-word probe (podman 4.3 splits CMD arguments at spaces) asks the same URL as compose.yaml's.
        url = re.search(r"http://127\.0\.0\.1:\d+/readyz", " ".join(full[name]["healthcheck"]["test"]))
        assert url and " " not in smoke[name]["healthcheck"]["test"][-1]
        assert f"'{url.group(0)}'" in smoke[name]["healthcheck"]["test"][-1]
    assert smoke["redis"] == full["redis"]
