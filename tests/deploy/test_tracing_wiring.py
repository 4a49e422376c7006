"""Traces leave every platform service: compose sends them to its collector (then Jaeger), Helm to the
endpoint `tracing.otlpEndpoint` names, and nowhere when it is empty."""

from __future__ import annotations

from tests.deploy.conftest import SERVICES, by_kind, helm_template


def test_compose_services_export_spans_to_the_collector(compose_config: dict) -> None:
    services = compose_config["services"]
    collector = services["otel-collector"]
    assert "jaeger" in collector.get("depends_on", {})
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["OTEL_TRACES_EXPORTER"] == "otlp", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name


def test_helm_sets_tracing_only_when_an_endpoint_is_given(helm_env: dict[str, str]) -> None:
    for endpoint in ("", "http://tempo.monitoring:4318"):
        docs = helm_template(helm_env, "values-cpu.yaml", "dev=true", f"tracing.otlpEndpoint={endpoint}")
        config_maps = by_kind(docs, "ConfigMap")
        for name in SERVICES:
            data = config_maps[f"llmops-llmops-platform-{name}"]["data"]
            if endpoint:
                assert data["OTEL_TRACES_EXPORTER"] == "otlp"
                assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
            else:
                assert "OTEL_TRACES_EXPORTER" not in data and "OTEL_EXPORTER_OTLP_ENDPOINT" not in data
