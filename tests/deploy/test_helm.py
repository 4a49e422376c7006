"""The Helm chart: linted and rendered by the real Helm binary, every manifest checked against the
Kubernetes JSON schemas of a current version (kubernetes-validate's strict schemas)."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from tests.deploy import custom_resources
from tests.deploy.conftest import CHART_DIR, KUBE_VERSION, SERVICES, VALUES_FILES, by_kind, helm_template, run, tool

# Custom resources (Prometheus Operator, KEDA): no schema ships in kubernetes-validate; their CRDs' schemas are
# checked by tests/deploy/custom_resources.py instead (types, required fields, unknown fields).
CRD_KINDS = set(custom_resources.MODELS)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_helm_lint_strict(helm_env: dict[str, str], values_file: str) -> None:
    """`helm lint --strict` passes for both values files (warnings count as failures)."""
    cmd = [tool("helm"), "lint", "--strict", str(CHART_DIR), "-f", str(CHART_DIR / values_file)]
    cmd += ["--kube-version", KUBE_VERSION, "--set", "dev=true"]
    out = run(cmd, env=helm_env).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_manifests_match_kubernetes_schemas(rendered: dict[str, list[dict]], values_file: str) -> None:
    """Every rendered object validates against the strict v1.37 schema of its kind."""
    docs = rendered[values_file]
    assert len(docs) > 20
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # test_custom_resources_match_their_crds
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{values_file}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_custom_resources_match_their_crds(helm_env: dict[str, str]) -> None:
    """ServiceMonitors, PrometheusRules (values-gpu.yaml turns them on) and the KEDA ScaledObject validate strictly
    against the schemas of the Prometheus Operator and KEDA CRDs."""
    docs = helm_template(helm_env, "values-gpu.yaml", "dev=true", "vllm.autoscaling.enabled=true")
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert kinds >= CRD_KINDS, f"not rendered: {CRD_KINDS - kinds}"
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            try:
                custom_resources.validate(doc)
            except ValueError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")


def test_custom_resource_validation_catches_bad_objects(rendered: dict[str, list[dict]]) -> None:
    """Negative control: an unknown field, a wrong type and a missing required field are each rejected."""
    monitor = next(d for d in rendered["values-gpu.yaml"] if d["kind"] == "ServiceMonitor")
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(ValueError, match=r"spec\.endpoints\[0\]\.intervall"):
        custom_resources.validate(typo)
    wrong_type = copy.deepcopy(monitor)
    wrong_type["spec"]["endpoints"] = "http"
    with pytest.raises(ValueError):
        custom_resources.validate(wrong_type)
    rule = copy.deepcopy(next(d for d in rendered["values-gpu.yaml"] if d["kind"] == "PrometheusRule"))
    del rule["spec"]["groups"][0]["name"]
    with pytest.raises(ValueError):
        custom_resources.validate(rule)


def test_schema_validation_catches_a_bad_manifest(rendered: dict[str, list[dict]]) -> None:
    """Negative control: an unknown field and a wrong type are both rejected."""
    deployment = copy.deepcopy(next(d for d in rendered["values-cpu.yaml"] if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    deployment = copy.deepcopy(next(d for d in rendered["values-cpu.yaml"] if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_values_schema_rejects_bad_values(helm_env: dict[str, str]) -> None:
    """values.schema.json is enforced by Helm: a wrong type and an unknown key both fail to render."""
    for bad in ("services.gateway.port=http", "vllm.gpusPerReplica=0", "services.gateway.typo=1"):
        proc = run([tool("helm"), "template", "x", str(CHART_DIR), "--set", bad], env=helm_env, check=False)
        assert proc.returncode != 0 and "schema" in proc.stderr, bad
    json.loads((CHART_DIR / "values.schema.json").read_text())


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_service_has_deployment_service_config_and_probes(
    rendered: dict[str, list[dict]], values_file: str
) -> None:
    """Deployment + Service + ConfigMap per service, probes on /healthz and /readyz, requests and limits."""
    docs = rendered[values_file]
    deployments, services, configmaps = (
        by_kind(docs, "Deployment"),
        by_kind(docs, "Service"),
        by_kind(docs, "ConfigMap"),
    )
    for name in SERVICES:
        full = f"llmops-llmops-platform-{name}"
        assert full in services and full in configmaps
        container = deployments[full]["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert deployments[full]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_hpa_for_gateway_and_rag_and_pdbs(rendered: dict[str, list[dict]]) -> None:
    """Gateway and rag scale horizontally; PDBs keep them (and guardrails) available through node drains."""
    docs = rendered["values-cpu.yaml"]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert {"llmops-llmops-platform-gateway", "llmops-llmops-platform-rag"} <= set(hpas)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert {"llmops-llmops-platform-gateway", "llmops-llmops-platform-rag"} <= set(pdbs)
    deployments = by_kind(docs, "Deployment")
    assert "replicas" not in deployments["llmops-llmops-platform-gateway"]["spec"], "the HPA owns replicas"


def test_gpu_values_run_vllm_on_gpu_nodes(rendered: dict[str, list[dict]]) -> None:
    """vLLM requests nvidia.com/gpu, selects GPU nodes and tolerates their taint; inference points at it."""
    gpu = rendered["values-gpu.yaml"]
    vllm = by_kind(gpu, "StatefulSet")["llmops-llmops-platform-vllm"]["spec"]["template"]["spec"]
    container = vllm["containers"][0]
    assert container["image"].startswith("vllm/vllm-openai:v")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert vllm["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in vllm["tolerations"])
    assert "mlflow artifacts download" in " ".join(vllm["initContainers"][0]["args"])
    cm = by_kind(gpu, "ConfigMap")["llmops-llmops-platform-inference"]["data"]
    assert cm["INFERENCE_ENGINE"] == "openai"
    assert cm["INFERENCE_UPSTREAM_URL"] == "http://llmops-llmops-platform-vllm:8000/v1"
    cpu = rendered["values-cpu.yaml"]
    assert "llmops-llmops-platform-vllm" not in by_kind(cpu, "StatefulSet")
    assert by_kind(cpu, "ConfigMap")["llmops-llmops-platform-inference"]["data"]["INFERENCE_ENGINE"] == "llamacpp"


def test_state_stores_in_cluster_or_external(helm_env: dict[str, str], rendered: dict[str, list[dict]]) -> None:
    """Redis, Qdrant, PostgreSQL and MLflow run as StatefulSets, or switch to external endpoints."""
    sts = by_kind(rendered["values-cpu.yaml"], "StatefulSet")
    for store in ("redis", "qdrant", "postgresql", "mlflow"):
        assert f"llmops-llmops-platform-{store}" in sts
        assert sts[f"llmops-llmops-platform-{store}"]["spec"]["volumeClaimTemplates"]
    external = helm_template(
        helm_env,
        "values-cpu.yaml",
        "dev=true",
        "redis.enabled=false",
        "externalRedis.url=redis://redis.example.internal:6379/0",
        "postgresql.enabled=false",
        "externalPostgresql.feedbackDatabaseUrl=postgresql://u:p@db.internal:5432/feedback",
        "externalPostgresql.registryDatabaseUrl=postgresql+psycopg://u:p@db.internal:5432/registry",
        "externalPostgresql.mlflowBackendStoreUri=postgresql+psycopg://u:p@db.internal:5432/mlflow",
    )
    names = set(by_kind(external, "StatefulSet"))
    assert "llmops-llmops-platform-redis" not in names and "llmops-llmops-platform-postgresql" not in names
    secret = by_kind(external, "Secret")["llmops-llmops-platform-secrets"]["stringData"]
    assert secret["redis-url"] == "redis://redis.example.internal:6379/0"  # a URL may carry a password: Secret
    proc = run(
        [tool("helm"), "template", "x", str(CHART_DIR), "--set", "dev=true", "--set", "redis.enabled=false"],
        env=helm_env,
        check=False,
    )
    assert proc.returncode != 0 and "externalRedis.url is required" in proc.stderr


def test_monitoring_toggles(rendered: dict[str, list[dict]]) -> None:
    """ServiceMonitors and PrometheusRules only when asked; dashboards always shipped as labelled ConfigMaps."""
    cpu, gpu = rendered["values-cpu.yaml"], rendered["values-gpu.yaml"]
    assert not by_kind(cpu, "ServiceMonitor")
    monitors = by_kind(gpu, "ServiceMonitor")
    assert {f"llmops-llmops-platform-{n}" for n in SERVICES} <= set(monitors)
    assert all(m["spec"]["endpoints"][0]["path"] == "/metrics" for m in monitors.values())
    assert by_kind(gpu, "PrometheusRule")
    dashboards = [c for c in by_kind(cpu, "ConfigMap").values() if c["metadata"]["labels"].get("grafana_dashboard")]
    assert dashboards
    for cm in dashboards:
        for body in cm["data"].values():
            assert json.loads(body)["uid"]


def test_helm_test_hooks_call_every_health_endpoint(rendered: dict[str, list[dict]]) -> None:
    """`helm test` runs one pod per service that calls its /healthz and /readyz through the Service."""
    pods = [d for d in rendered["values-cpu.yaml"] if d["kind"] == "Pod"]
    hooks = {p["metadata"]["name"]: p for p in pods if p["metadata"]["annotations"].get("helm.sh/hook") == "test"}
    for name in SERVICES:
        pod = hooks[f"llmops-llmops-platform-test-{name}"]
        script = " ".join(pod["spec"]["containers"][0]["args"])
        assert f"llmops-llmops-platform-{name}:" in script
        assert "/healthz" in script and "/readyz" in script


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Pod templates of every workload (and bare Pods), keyed by the object's name."""
    out = {}
    for doc in docs:
        spec = doc.get("spec", {})
        if doc.get("kind") == "Pod":
            out[doc["metadata"]["name"]] = spec
        elif "template" in spec and "spec" in spec["template"]:
            out[doc["metadata"]["name"]] = spec["template"]["spec"]
    return out


def test_mlflow_starts_with_auth_and_only_the_registry_holds_its_admin_password(
    rendered: dict[str, list[dict]],
) -> None:
    """Issue 12 row 1: MLflow runs behind its basic-auth app (services.registry.mlflow_server); the Secret key
    mlflow-admin-password reaches MLflow and the registry only; rag, feedback and the vLLM init container use
    their own users."""
    gpu = rendered["values-gpu.yaml"]
    secret = next(d for d in gpu if d["kind"] == "Secret")["stringData"]
    mlflow = by_kind(gpu, "StatefulSet")["llmops-llmops-platform-mlflow"]["spec"]["template"]["spec"]
    [server] = mlflow["containers"]
    assert server["args"] == ["python", "-m", "services.registry.mlflow_server"]
    env = {e["name"]: e for e in server["env"]}
    assert "MLFLOW_AUTH_ENABLED" not in env and env["MLFLOW_AUTH_ADMIN_USERNAME"]["value"] == "llmops-registry"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mlflow-admin-password"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "mlflow-flask-secret-key"
    assert env["MLFLOW_AUTH_USERS"]["value"].startswith("rag:$(RAG_MLFLOW_PASSWORD),feedback:")
    assert "$(VLLM_MODEL_MLFLOW_PASSWORD)" in env["MLFLOW_AUTH_USERS"]["value"]
    assert (
        secret["rag-mlflow-tracking-uri"]
        == f"http://rag:{secret['mlflow-rag-password']}@llmops-llmops-platform-mlflow:5000"
    )
    holders = set()
    for name, spec in _pod_specs(gpu).items():
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("key") == "mlflow-admin-password":
                    holders.add(name)
            assert secret["mlflow-admin-password"] not in json.dumps(container), f"{name} has it in plain text"
    # ... and the registry's seed Job (the registry's own code, run once per install and upgrade).
    assert holders == {
        "llmops-llmops-platform-mlflow",
        "llmops-llmops-platform-registry",
        "llmops-llmops-platform-seed-1",
    }
    [fetch] = [
        c for spec in _pod_specs(gpu).values() for c in spec.get("initContainers", []) if c["name"] == "fetch-model"
    ]
    fetch_env = {e["name"]: e for e in fetch["env"]}
    assert fetch_env["MLFLOW_TRACKING_USERNAME"]["value"] == "vllm-model"
    assert fetch_env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mlflow-vllm-model-password"
