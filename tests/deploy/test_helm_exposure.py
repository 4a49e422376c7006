"""The chart exposes only the front door (issue 14 "Only the gateway is published", issue 12 rows 5 and 12), rendered
by the real Helm: NetworkPolicies that follow the call graph, tokens and passwords only from the Secret (yours unless
dev: true), vLLM behind --api-key, pull settings on every pod, monitoring that does not depend on the release name,
a model cache that survives restarts, and autoscaling on vLLM's queue."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.deploy.conftest import CHART_DIR, COMPOSE_DIR, SERVICES, by_kind, helm_template, run, tool

FULL = "llmops-llmops-platform"
POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")
# Who calls whom (the services' *_URL settings): each component may reach exactly these, plus DNS.
CALLS = {
    "gateway": {"inference", "guardrails", "registry", "redis"},
    "inference": {"vllm", "registry", "mlflow"},
    "rag": {"gateway", "guardrails", "registry", "redis", "qdrant", "mlflow"},
    "registry": {"mlflow", "postgresql"},
    "feedback": {"gateway", "registry", "redis", "postgresql", "mlflow"},
    "guardrails": set(),
    "mlflow": {"postgresql"},
    "vllm": {"mlflow"},
    "seed": {"registry", "mlflow", "postgresql"},
}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """kind/name -> pod spec of every workload and bare pod."""
    out = {}
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = spec
    return out


def policies(docs: list[dict]) -> dict[str, dict]:
    """Component -> its NetworkPolicy spec (the default deny under "default-deny")."""
    return {d["metadata"]["name"].removeprefix(f"{FULL}-"): d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}


def component(peer: dict) -> str | None:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")


def egress_components(spec: dict) -> set[str]:
    return {component(peer) for rule in spec["egress"] for peer in rule.get("to", []) if component(peer)}


@pytest.fixture(scope="module")
def gpu(rendered: dict[str, list[dict]]) -> list[dict]:
    return rendered["values-gpu.yaml"]


# ---- NetworkPolicies --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values_file", ["values-cpu.yaml", "values-gpu.yaml"])
def test_default_deny_and_one_policy_per_component(rendered: dict[str, list[dict]], values_file: str) -> None:
    docs = rendered[values_file]
    found = policies(docs)
    deny = found.pop("default-deny")
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "llmops-platform",
        "app.kubernetes.io/instance": "llmops",
    }
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        pod_labels = (doc if doc["kind"] == "Pod" else doc["spec"]["template"])["metadata"]["labels"]
        assert all(pod_labels.get(k) == v for k, v in deny["podSelector"]["matchLabels"].items()), name
        matching = [
            c
            for c, p in found.items()
            if all(pod_labels.get(k) == v for k, v in p["podSelector"]["matchLabels"].items())
        ]
        assert len(matching) == 1, f"{name} is selected by {matching}"


def test_only_the_gateway_takes_traffic_from_outside_the_release(gpu: list[dict], helm_env: dict[str, str]) -> None:
    """Every ingress rule names its peers, except the gateway's own port; Prometheus may scrape /metrics."""
    for name, spec in policies(gpu).items():
        if name == "default-deny":
            continue
        open_rules = [rule for rule in spec.get("ingress", []) if "from" not in rule]
        if name == "gateway":
            assert [r["ports"] for r in open_rules] == [[{"port": 8000, "protocol": "TCP"}]]
        else:
            assert not open_rules, f"{name} accepts anyone"
    vllm = policies(gpu)["vllm"]
    callers = {component(p) for rule in vllm["ingress"] for p in rule["from"] if component(p)}
    assert callers == {"inference"}, "only the inference service reaches vLLM"
    narrowed = "networkPolicy.gatewayFrom[0].namespaceSelector.matchLabels.ingress=yes"
    rule = policies(helm_template(helm_env, "values-gpu.yaml", "dev=true", narrowed))["gateway"]["ingress"][0]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"ingress": "yes"}}}]


def test_each_component_reaches_only_what_it_calls_plus_dns(gpu: list[dict]) -> None:
    found = policies(gpu)
    for name, calls in CALLS.items():
        spec = found[name]
        assert egress_components(spec) == calls, name
        dns = spec["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53} and dns["to"][0]["podSelector"]["matchLabels"]["k8s-app"]
    for store in ("redis", "qdrant", "postgresql"):
        assert found[store]["egress"] == [found[store]["egress"][0]], f"{store} calls nobody"


def test_every_url_a_service_is_given_is_allowed_by_its_policy(gpu: list[dict]) -> None:
    """The call graph of the policies agrees with the env: each in-release host:port a service is configured
    with is one its egress allows (so a new *_URL without a policy change fails here)."""
    found = policies(gpu)
    secrets = by_kind(gpu, "Secret")[f"{FULL}-secrets"]["stringData"]
    for name in SERVICES:
        values = list(by_kind(gpu, "ConfigMap")[f"{FULL}-{name}"]["data"].values())
        container = by_kind(gpu, "Deployment")[f"{FULL}-{name}"]["spec"]["template"]["spec"]["containers"][0]
        values += [secrets[e["valueFrom"]["secretKeyRef"]["key"]] for e in container.get("env", [])]
        for target, port in re.findall(rf"{FULL}-([a-z]+):(\d+)", " ".join(values)):
            allowed = {
                (component(peer), p["port"])
                for rule in found[name]["egress"]
                for peer in rule.get("to", [])
                for p in rule["ports"]
            }
            assert (target, int(port)) in allowed, f"{name} is configured to call {target}:{port}"


def test_external_stores_and_tracing_get_egress_to_their_port(helm_env: dict[str, str]) -> None:
    docs = helm_template(
        helm_env,
        "values-cpu.yaml",
        "dev=true",
        "redis.enabled=false",
        "externalRedis.url=redis://:pw@redis.example.internal:6380/0",
        "tracing.otlpEndpoint=http://otel-collector.observability:4318",
    )
    gateway = policies(docs)["gateway"]["egress"]
    anywhere = [rule["ports"][0]["port"] for rule in gateway if "to" not in rule]
    assert 6380 in anywhere and 4318 in anywhere
    assert "redis" not in policies(docs)


# ---- secrets ----------------------------------------------------------------------------------------------------
def test_rendering_without_existing_secret_or_dev_fails_clearly(helm_env: dict[str, str]) -> None:
    cmd = [tool("helm"), "template", "x", str(CHART_DIR), "-f", str(CHART_DIR / "values-cpu.yaml")]
    proc = run(cmd, env=helm_env, check=False)
    assert proc.returncode != 0 and "secrets.existingSecret is required" in proc.stderr, proc.stderr


def test_existing_secret_is_used_by_every_pod_and_no_secret_is_rendered(helm_env: dict[str, str]) -> None:
    docs = helm_template(helm_env, "values-gpu.yaml", "secrets.existingSecret=llmops-prod")
    assert not by_kind(docs, "Secret")
    refs = set()
    for spec in pod_specs(docs).values():
        for container in spec["containers"] + spec.get("initContainers", []):
            for item in container.get("env", []):
                if "valueFrom" in item:
                    refs.add(item["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"llmops-prod"}
    for cm in by_kind(docs, "ConfigMap").values():
        for key, value in (cm.get("data") or {}).items():
            assert not re.search(r"(TOKEN|KEY|PASSWORD)$", key), f"{key} in a ConfigMap"
            assert "redis://" not in value or "@" not in value, f"{key}: a credential in a ConfigMap"


def test_each_internal_service_and_its_callers_share_a_secret_key(gpu: list[dict]) -> None:
    def secret_env(name: str, kind: str = "Deployment") -> dict[str, str]:
        spec = by_kind(gpu, kind)[f"{FULL}-{name}"]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in spec.get("env", []) if "valueFrom" in e}

    gateway, rag = secret_env("gateway"), secret_env("rag")
    assert secret_env("inference")["INFERENCE_SERVICE_TOKEN"] == gateway["GATEWAY_INFERENCE_TOKEN"]
    assert secret_env("guardrails")["GUARDRAILS_SERVICE_TOKEN"] == gateway["GATEWAY_GUARDRAILS_TOKEN"]
    assert rag["RAG_GUARDRAILS_TOKEN"] == gateway["GATEWAY_GUARDRAILS_TOKEN"]
    assert rag["RAG_SERVICE_TOKEN"] == "rag-service-token" and gateway["GATEWAY_METRICS_TOKEN"]
    assert {
        gateway["GATEWAY_REDIS_URL"],
        rag["RAG_EVENTS_REDIS_URL"],
        secret_env("feedback")["FEEDBACK_REDIS_URL"],
    } == {"redis-url"}
    # vLLM: --api-key from the Secret, the inference service holds the same key.
    vllm = by_kind(gpu, "StatefulSet")[f"{FULL}-vllm"]["spec"]["template"]["spec"]["containers"][0]
    assert "--api-key=$(VLLM_API_KEY)" in vllm["args"]
    key = next(e for e in vllm["env"] if e["name"] == "VLLM_API_KEY")["valueFrom"]["secretKeyRef"]["key"]
    assert key == secret_env("inference")["INFERENCE_UPSTREAM_API_KEY"] == "vllm-api-key"
    # Feedback registers datasets at the registry under its own service identity (issue 12, row 8).
    assert secret_env("feedback")["FEEDBACK_REGISTRY_TOKEN"] == "feedback-registry-token"
    assert secret_env("registry")["REGISTRY_SERVICE_TOKENS"] == "registry-service-tokens"
    dev_secret = by_kind(gpu, "Secret")[f"{FULL}-secrets"]["stringData"]
    assert dev_secret["registry-service-tokens"] == f"feedback:{dev_secret['feedback-registry-token']}"


def test_redis_requires_its_password(gpu: list[dict]) -> None:
    redis = by_kind(gpu, "StatefulSet")[f"{FULL}-redis"]["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"  # counters are never evicted
    assert redis["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    secret = by_kind(gpu, "Secret")[f"{FULL}-secrets"]["stringData"]
    assert secret["redis-url"] == f"redis://:{secret['redis-password']}@{FULL}-redis:6379/0"


def test_no_dev_mode_and_no_demo_principal(gpu: list[dict]) -> None:
    """Issue 12 row 12: the registry's demo principals exist only under `make up`; Helm never sets a dev flag."""
    for cm in by_kind(gpu, "ConfigMap").values():
        for key, value in (cm.get("data") or {}).items():
            assert not key.endswith("DEV_MODE") and "demo-" not in value, f"{cm['metadata']['name']}: {key}"


# ---- images ---------------------------------------------------------------------------------------------------
def test_registry_and_pull_secrets_apply_to_every_pod(helm_env: dict[str, str]) -> None:
    docs = helm_template(
        helm_env,
        "values-gpu.yaml",
        "dev=true",
        "image.registry=mirror.example.com/team",
        "imagePullSecrets[0].name=regcred",
    )
    specs = pod_specs(docs)
    assert any("vllm" in n for n in specs) and any("mlflow" in n for n in specs)
    for name, spec in specs.items():
        assert spec.get("imagePullSecrets") == [{"name": "regcred"}], name
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["image"].startswith("mirror.example.com/team/"), f"{name}: {container['image']}"


# ---- monitoring -----------------------------------------------------------------------------------------------
def test_service_monitors_set_a_release_independent_job_and_selectable_labels(gpu: list[dict]) -> None:
    services = by_kind(gpu, "Service")
    monitors = by_kind(gpu, "ServiceMonitor")
    assert set(monitors) == {f"{FULL}-{n}" for n in [*SERVICES, "vllm"]}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        label = monitor["spec"]["jobLabel"]
        job = services[name]["metadata"]["labels"][label]
        assert job == ("vllm" if name.endswith("-vllm") else f"llmops-{name.removeprefix(FULL + '-')}")
    for rule in by_kind(gpu, "PrometheusRule").values():
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    gateway = monitors[f"{FULL}-gateway"]["spec"]["endpoints"][0]
    assert gateway["authorization"]["credentials"]["key"] == "gateway-metrics-token"


def test_service_monitor_labels_are_configurable(helm_env: dict[str, str]) -> None:
    docs = helm_template(helm_env, "values-gpu.yaml", "dev=true", "monitoring.serviceMonitor.labels.release=kps")
    assert all(m["metadata"]["labels"]["release"] == "kps" for m in by_kind(docs, "ServiceMonitor").values())


def test_services_up_panel_and_service_down_alert_select_the_jobs_both_deployments_name() -> None:
    """`up{job=~"llmops-.*"}` matches compose's job_name and the chart's jobLabel values, whatever the release."""
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    compose_jobs = {j["job_name"] for j in prometheus["scrape_configs"] if j["job_name"].startswith("llmops-")}
    assert compose_jobs == {f"llmops-{n}" for n in SERVICES}
    texts = [p.read_text() for p in (COMPOSE_DIR / "prometheus" / "rules").glob("*.yml")]
    texts += [p.read_text() for p in (COMPOSE_DIR / "grafana" / "dashboards").glob("*.json")]
    selectors = {m for t in texts for m in re.findall(r"up\{([^}]*)\}", t.replace('\\"', '"'))}
    assert selectors == {'job=~"llmops-.*"'}, selectors
    overview = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "platform-overview.json").read_text())
    assert "{{service}}" not in json.dumps(overview), "the service label differs between compose and Kubernetes"


# ---- vLLM: model cache and autoscaling ------------------------------------------------------------------------
def test_model_cache_is_a_pvc_by_default(gpu: list[dict], helm_env: dict[str, str]) -> None:
    vllm = by_kind(gpu, "StatefulSet")[f"{FULL}-vllm"]["spec"]
    assert [t["metadata"]["name"] for t in vllm["volumeClaimTemplates"]] == ["models"]
    assert "models" not in {v["name"] for v in vllm["template"]["spec"]["volumes"]}
    fetch = " ".join(vllm["template"]["spec"]["initContainers"][0]["args"])
    assert ".llmops-version" in fetch and "exit 0" in fetch, "a cache holding the production version is kept"
    off = helm_template(helm_env, "values-gpu.yaml", "dev=true", "vllm.modelVolume.persistence.enabled=false")
    spec = by_kind(off, "StatefulSet")[f"{FULL}-vllm"]["spec"]
    assert "volumeClaimTemplates" not in spec
    assert next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == "models")["emptyDir"]
    claim = helm_template(helm_env, "values-gpu.yaml", "dev=true", "vllm.modelVolume.existingClaim=models-rwx")
    volumes = by_kind(claim, "StatefulSet")[f"{FULL}-vllm"]["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "models")["persistentVolumeClaim"]["claimName"] == "models-rwx"


@pytest.mark.parametrize("mode", ["keda", "hpa"])
def test_vllm_autoscales_on_its_queue(helm_env: dict[str, str], mode: str) -> None:
    docs = helm_template(
        helm_env, "values-gpu.yaml", "dev=true", "vllm.autoscaling.enabled=true", f"vllm.autoscaling.mode={mode}"
    )
    assert "replicas" not in by_kind(docs, "StatefulSet")[f"{FULL}-vllm"]["spec"], "the autoscaler owns replicas"
    if mode == "keda":
        scaled = by_kind(docs, "ScaledObject")[f"{FULL}-vllm"]["spec"]
        assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"{FULL}-vllm"}
        query = scaled["triggers"][0]["metadata"]["query"]
        assert "vllm:num_requests_waiting" in query and f'service="{FULL}-vllm"' in query
    else:
        hpa = by_kind(docs, "HorizontalPodAutoscaler")[f"{FULL}-vllm"]["spec"]
        assert hpa["scaleTargetRef"]["kind"] == "StatefulSet"
        assert hpa["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    default = helm_template(helm_env, "values-gpu.yaml", "dev=true")
    assert not by_kind(default, "ScaledObject") and f"{FULL}-vllm" not in by_kind(default, "HorizontalPodAutoscaler")
