"""The optional MLflow sink against a real `mlflow server`, started here (30-120 s on a busy 2-core machine), or
a running one given as FEEDBACK_TEST_MLFLOW_URI=http://host:port. Part of `make test`: a sink that is only tested
on request is a sink nobody knows to be broken.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.tests.helpers import emit, free_port, make_event, serve, wait_for

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed; the sink is optional")
pytestmark = [
    pytest.mark.integration,
    # MLflow warns about its own type hints the first time tracing runs; the suite turns warnings into errors.
    pytest.mark.filterwarnings("ignore::UserWarning:mlflow"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow"),
]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, local artifacts) on an ephemeral port."""
    if os.environ.get("FEEDBACK_TEST_MLFLOW_URI"):
        yield os.environ["FEEDBACK_TEST_MLFLOW_URI"]
        return
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("mlflow server exited")
            time.sleep(0.2)
        else:
            raise RuntimeError("mlflow server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_traces_feedback_and_datasets_reach_mlflow(
    make_settings: Any, redis: Redis, stream_key: str, mlflow_server: str
) -> None:
    """An event becomes an MLflow trace tagged with its request id; feedback becomes assessments on it."""
    settings = make_settings(mlflow_tracking_uri=mlflow_server, mlflow_experiment=f"fb-{stream_key[-8:]}")
    exported_before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    ev = make_event(request_id=f"req-mlflow-{stream_key[-8:]}")
    async with serve(create_app(settings)) as url:
        await emit(redis, stream_key, [ev])
        async with httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer sk-team-a"}, timeout=60) as c:
            r = await c.post(
                "/v1/feedback",
                json={"request_id": ev["request_id"], "rating": 2, "comment": "meh", "corrected_answer": "Paris."},
            )
            assert r.status_code == 201
            client = mlflow.MlflowClient(mlflow_server)

            async def assessed() -> Any:
                # The sink creates the experiment with its first trace.
                experiment = await asyncio.to_thread(client.get_experiment_by_name, settings.mlflow_experiment)
                if experiment is None:
                    return None
                traces = await asyncio.to_thread(
                    mlflow.search_traces,
                    locations=[experiment.experiment_id],
                    return_type="list",
                    filter_string=f"tags.llmops_request_id = '{ev['request_id']}'",
                )
                if traces and len(traces[0].info.assessments or []) == 2:
                    return traces[0]
                return None

            trace = await wait_for(assessed, timeout=90, interval=0.5)
            values = {a.name: a.value for a in trace.info.assessments}
            assert values == {"user_score": 0.25, "corrected_answer": "Paris."}
            assert trace.info.tags["team"] == "team-a"
            r = await c.post("/v1/datasets/export", json={"name": "mlflow-ds"})
            assert r.status_code == 201 and r.json()["registered_in"] == "mlflow"
            assert r.json()["registry_ref"].endswith(".jsonl") and r.json()["rows"] == 1
    # The sink configures MLflow for itself only: nothing it sets leaks into the environment that every process
    # started from this one inherits (an exported MLFLOW_EXPERIMENT_ID broke later MLflow users).
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == exported_before
