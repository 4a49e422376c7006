"""RAG with the real registry service over a real MLflow server (the LLM call goes to the FAKE gateway).

Prompts: answers use `<prompt>@production` from the registry and follow a promotion without a restart.
Lineage: ingestion runs become registry dataset versions whose digest leads from an answer's `data_version`
to the MLflow run holding the ingestion parameters. Tracking: ingestion and eval runs read back with MLflow's
own client. The servers start once per module (MLflow takes 10-60 s on a busy 2-core machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops_common.service_auth import service_headers
from services.rag.app import create_app
from services.rag.embedder import Embedder
from services.rag.prompts import load_default
from services.rag.tests.conftest import SERVICE_TOKEN, rag_settings
from services.rag.tests.fake_gateway import FakeGatewayState, serve_in_thread
from services.registry.tests.conftest import (  # noqa: F401 - fixtures used by name
    ADMIN_TOKEN,
    MLFLOW_ADMIN,
    MLFLOW_READER,
    Caller,
    MlflowServer,
    RegistryServer,
    base_url,
    mlflow_server,
    people,
    registry_server,
    unique,
)
from tests.support.servers import REPO

mlflow = pytest.importorskip("mlflow")
pytestmark = [
    pytest.mark.integration,
    # MLflow's client warns about its own internals on import/first use; the suite turns warnings into errors.
    pytest.mark.filterwarnings("ignore::UserWarning:mlflow"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
KEY = {"authorization": "Bearer key-team-a"}
CATS = "# Cats\n\nCats are small carnivorous mammals that purr when content.\n\n## Food\n\nCats eat fish and mice."
DOGS = "# Dogs\n\nDogs bark loudly at the postman and fetch sticks in the park."


def rag_mlflow_uri(mlflow_url: str) -> str:
    """RAG's MLflow URL with its own, non-admin MLflow user in it (MLflow runs behind basic auth; RAG's client,
    httpx, sends a URL's user:password as basic auth). Not the registry's admin account."""
    user, password = MLFLOW_READER
    return mlflow_url.replace("http://", f"http://{user}:{password}@", 1)


@pytest.fixture(scope="module")
def seeded(registry_server: RegistryServer) -> RegistryServer:  # noqa: F811
    """The registry seeded as `make up` seeds it, but outside dev mode (no demo team: the tests' principals come
    from `people`, a member created by one admin and approved by a second)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'libs'}",
        "REGISTRY_MLFLOW_TRACKING_URI": registry_server.mlflow_url,
        "REGISTRY_MLFLOW_USERNAME": MLFLOW_ADMIN[0],
        "REGISTRY_MLFLOW_PASSWORD": MLFLOW_ADMIN[1],
        "REGISTRY_DATABASE_URL": registry_server.database_url,
        "REGISTRY_DEV_MODE": "false",
        "REGISTRY_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.registry.seed"], cwd=REPO, env=env, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return registry_server


@contextmanager
def rag_app(
    tmp_path: Path,
    embedder: Embedder,
    gateway_url: str,
    registry: RegistryServer | None,
    token: str | None = None,
    **overrides: Any,
) -> Iterator[httpx.Client]:
    """A RAG service wired to the registry (as make up wires it, with a member's `token`) and to the same MLflow
    server as its own MLflow user."""
    settings: dict[str, Any] = {"mlflow_experiment": f"rag-test-{uuid.uuid4().hex[:8]}"}
    if registry is not None:
        settings |= {
            "registry_url": registry.url,
            "registry_token": token,
            "registry_refresh_s": 0.2,
            "mlflow_tracking_uri": rag_mlflow_uri(registry.mlflow_url),
        }
    app = create_app(rag_settings(tmp_path, gateway_url, **(settings | overrides)), embedder=embedder)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=KEY, timeout=120) as client:
        yield client


def ingest(client: httpx.Client, name: str, docs: list[dict[str, str]]) -> dict[str, Any]:
    if client.get(f"/v1/collections/{name}").status_code == 404:
        assert client.post("/v1/collections", json={"name": name}).status_code == 201
    job = client.post(f"/v1/collections/{name}/documents", json={"documents": docs, "wait": True}).json()
    assert job["status"] == "succeeded", job
    return job["run"]


def ask(client: httpx.Client, name: str, question: str = "What do cats eat?") -> dict[str, Any]:
    resp = client.post(f"/v1/collections/{name}/answer", json={"question": question})
    assert resp.status_code == 200, resp.text
    return resp.json()


def register_and_promote(people: dict[str, Caller], name: str, system: str) -> str:  # noqa: F811
    """A new chat version of `name`, moved to production through an approved promotion (member asks, reviewer ok)."""
    template = [
        {"role": "system", "content": system + "\n\nPassages:\n{{context}}"},
        {"role": "user", "content": "{{question}}"},
    ]
    created = people["member"].http.post(f"/v1/prompts/{name}/versions", json={"template": template})
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    body = {"object_type": "prompt", "name": name, "alias": "production", "version": version, "reason": "test"}
    request = people["member"].http.post("/v1/promotions", json=body)
    assert request.status_code == 201, request.text
    approved = people["reviewer"].http.post(f"/v1/promotions/{request.json()['id']}/approve", json={"reason": "ok"})
    assert approved.status_code == 200, approved.text
    return str(version)


def member_token(people: dict[str, Caller]) -> str:  # noqa: F811
    """The bearer token of the tests' member principal (what RAG holds as RAG_REGISTRY_TOKEN)."""
    return people["member"].http.headers["authorization"].removeprefix("Bearer ")


def test_the_seeded_production_prompt_is_the_shipped_v2_and_answers_use_it(
    seeded: RegistryServer,
    people: dict[str, Caller],  # noqa: F811
    tmp_path: Path,
    embedder: Embedder,
    fake_gateway: tuple[str, FakeGatewayState],
) -> None:
    production = people["viewer"].http.get("/v1/prompts/rag-answer/aliases/production").json()
    shipped = load_default("rag-answer", "2")
    assert production["version"] == "2"
    assert production["template"] == [{"role": r, "content": c} for r, c in shipped.template]
    with rag_app(tmp_path, embedder, fake_gateway[0], seeded, member_token(people)) as rag:
        ingest(rag, "pets", [{"id": "cats", "text": CATS}])
        out = ask(rag, "pets")
        assert out["prompt_version"] == "rag-answer@2" and out["answer"]
        view = rag.get("/v1/prompts/answer", headers=service_headers(SERVICE_TOKEN)).json()
        assert (view["source"], view["fallback"], view["registry"]["registry_error"]) == ("registry", False, None)
    sent = fake_gateway[1].chat_calls[-1]["messages"]
    assert (
        sent[0]["content"].startswith(shipped.content("system").split("{{")[0])
        and "Cats eat fish" in sent[0]["content"]
    )
    assert sent[1] == {"role": "user", "content": "What do cats eat?"}


def test_a_promoted_prompt_version_is_used_without_a_restart(
    seeded: RegistryServer,
    people: dict[str, Caller],  # noqa: F811
    tmp_path: Path,
    embedder: Embedder,
    fake_gateway: tuple[str, FakeGatewayState],
) -> None:
    name = unique("rag-prompt")  # its own prompt: promoting it changes nothing for the other tests
    first = register_and_promote(people, name, "FIRST-VERSION: answer from the passages, cite them like [1].")
    with rag_app(tmp_path, embedder, fake_gateway[0], seeded, member_token(people), registry_prompt=name) as rag:
        ingest(rag, "pets", [{"id": "cats", "text": CATS}])
        assert ask(rag, "pets")["prompt_version"] == f"{name}@{first}"
        assert fake_gateway[1].chat_calls[-1]["messages"][0]["content"].startswith("FIRST-VERSION")
        second = register_and_promote(people, name, "SECOND-VERSION: answer from the passages, cite them like [1].")
        deadline = time.monotonic() + 30
        while (out := ask(rag, "pets"))["prompt_version"] != f"{name}@{second}":
            assert out["prompt_version"] == f"{name}@{first}", out["prompt_version"]
            assert time.monotonic() < deadline, "the promoted version was not picked up"
            time.sleep(0.2)
        # What the answer reports is what it sent.
        assert fake_gateway[1].chat_calls[-1]["messages"][0]["content"].startswith("SECOND-VERSION")
        assert rag.get("/v1/prompts/answer", headers=service_headers(SERVICE_TOKEN)).json()["id"] == f"{name}@{second}"


def test_a_registry_without_the_prompt_means_the_shipped_template_marked_as_such(
    seeded: RegistryServer,
    people: dict[str, Caller],  # noqa: F811
    tmp_path: Path,
    embedder: Embedder,
    fake_gateway: tuple[str, FakeGatewayState],
) -> None:
    token = member_token(people)
    with rag_app(tmp_path, embedder, fake_gateway[0], seeded, token, registry_prompt=unique("missing")) as rag:
        ingest(rag, "pets", [{"id": "cats", "text": CATS}])
        assert ask(rag, "pets")["prompt_version"] == "rag-answer@2 (shipped)"
        view = rag.get("/v1/prompts/answer", headers=service_headers(SERVICE_TOKEN)).json()
        assert "prompt_not_found" in view["registry"]["registry_error"]


def test_ingestion_runs_are_dataset_versions_an_answer_can_be_traced_to(
    seeded: RegistryServer,
    people: dict[str, Caller],  # noqa: F811
    tmp_path: Path,
    embedder: Embedder,
    fake_gateway: tuple[str, FakeGatewayState],
) -> None:
    client = mlflow.MlflowClient(tracking_uri=seeded.mlflow_url)
    name = unique("pets")  # a dataset name of its own (the same content elsewhere would be the same version)
    with rag_app(tmp_path, embedder, fake_gateway[0], seeded, member_token(people)) as rag:
        first = ingest(rag, name, [{"id": "cats", "text": CATS}])
        dataset = first["dataset_version"]
        assert dataset["name"] == f"rag.team-a.{name}" and dataset["version"] == 1 and dataset["created"] is True
        again = ingest(rag, name, [{"id": "cats", "text": CATS}])  # unchanged content: the same data version
        assert again["dataset_version"]["version"] == 1 and again["dataset_version"]["created"] is False
        second = ingest(rag, name, [{"id": "dogs", "text": DOGS}])
        assert second["dataset_version"]["version"] == 2 and second["dataset_version"]["ref"] == f"rag.team-a.{name}@2"
        stored = rag.get(f"/v1/collections/{name}/ingest-runs/{second['run_id']}").json()
        assert stored["dataset_version"] == second["dataset_version"] and stored["mlflow_run_id"]
        answer = ask(rag, name)
        chunks = rag.get(f"/v1/collections/{name}").json()["chunks"]
    # From the answer to the data behind it: the dataset version whose digest starts with its data_version ...
    versions = people["viewer"].http.get(f"/v1/datasets/rag.team-a.{name}/versions").json()
    [behind] = [v for v in versions if v["digest"].startswith(f"sha256:{answer['data_version']}")]
    assert behind["version"] == 2 and behind["row_count"] == chunks and behind["source_type"] == "qdrant"
    assert behind["schema"]["text"] == "string" and behind["source"].startswith("file://")
    # ... whose producer run holds how it was made.
    assert behind["producer_run_id"] == second["mlflow_run_id"]
    run = client.get_run(behind["producer_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "rag-ingest"
    assert run.data.params["embedding_model"] == second["params"]["embedding_model"]
    assert run.data.params["chunk_size_tokens"] == str(second["params"]["chunk_size_tokens"])
    assert run.data.params["input_hash"] == second["input_hash"]
    assert run.data.params["data_version"] == answer["data_version"]
    assert run.data.metrics["count.indexed"] == 1.0 and run.data.metrics["count.chunks"] >= 1


def test_without_a_registry_ingestion_and_eval_runs_are_in_mlflow_with_params_and_metrics(
    mlflow_server: MlflowServer,  # noqa: F811
    tmp_path: Path,
    embedder: Embedder,
    fake_gateway: tuple[str, FakeGatewayState],
) -> None:
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    experiment = f"rag-direct-{uuid.uuid4().hex[:8]}"
    overrides = {"mlflow_tracking_uri": rag_mlflow_uri(mlflow_server.url), "mlflow_experiment": experiment}
    with rag_app(tmp_path, embedder, fake_gateway[0], None, **overrides) as rag:
        run = ingest(rag, "pets", [{"id": "cats", "text": CATS}, {"id": "dogs", "text": DOGS}])
        assert run["dataset_version"] is None and run["dataset_error"] is None and run["mlflow_run_id"]
        questions = [
            {"id": "q1", "question": "What do cats eat?", "gold_doc_ids": ["cats"]},
            {"id": "q2", "question": "Who barks at the postman?", "gold_doc_ids": ["dogs"]},
        ]
        body = {"name": "pets-eval", "questions": questions, "k": [1, 5], "strategies": ["dense", "hybrid"]}
        body |= {"answers": True, "answer_strategy": "hybrid"}
        report = rag.post("/v1/collections/pets/eval", json=body).json()
    ids = report["mlflow_run_ids"]
    assert len(ids) == 2 and all(ids), ids
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    # The ingestion run is found by the data version an answer reports.
    query = f"params.data_version = '{run['data_version']}' and tags.kind = 'rag-ingest'"
    [found] = client.search_runs([exp_id], filter_string=query)
    assert found.info.run_id == run["mlflow_run_id"] and found.data.params["chunker"] == run["params"]["chunker"]
    by_strategy = {}
    for run_id in ids:
        got = client.get_run(run_id)
        assert got.info.status == "FINISHED" and got.data.tags["kind"] == "rag-eval"
        by_strategy[got.data.params["strategy"]] = got
    assert set(by_strategy) == {"dense", "hybrid"}
    for strategy, got in by_strategy.items():
        logged = report["strategies"][strategy]["metrics"]
        assert got.data.metrics["recall_at_1"] == pytest.approx(logged["recall@1"])
        assert got.data.metrics["ndcg_at_10"] == pytest.approx(logged["ndcg@10"])
        assert got.data.params["dataset"] == "pets-eval" and got.data.params["data_version"] == run["data_version"]
        assert got.data.params["embedding_model"] == run["params"]["embedding_model"]
    # Answer quality is logged with the prompt and model it was measured with, on the answer strategy's run.
    hybrid = by_strategy["hybrid"].data
    assert hybrid.params["prompt_version"] == "rag-answer@2" and hybrid.params["llm_model"] == "smollm2-135m-instruct"
    assert hybrid.metrics["answer.answer_relevance"] == pytest.approx(report["answers"]["metrics"]["answer_relevance"])
    assert "prompt_version" not in by_strategy["dense"].data.params
