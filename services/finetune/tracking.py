"""The training run in MLflow: params, the loss curve (one metric per step), eval metrics, artifacts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from services.finetune.settings import FinetuneSettings


class TrainingRun:
    """One MLflow run, written with MLflow's own client (the registry links to it by id)."""

    def __init__(self, settings: FinetuneSettings, run_name: str, tags: dict[str, str]) -> None:
        from mlflow import MlflowClient

        uri = settings.mlflow_tracking_uri
        artifacts = None
        if not uri:
            settings.work_dir.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{settings.work_dir / 'mlflow.db'}"
            # Without a server, MLflow would put artifacts in ./mlruns of whatever folder the command ran in.
            artifacts = (settings.work_dir / "mlflow-artifacts").resolve().as_uri()
        if settings.mlflow_username and settings.mlflow_password:
            # MLflow's client reads its basic-auth credentials from the environment only.
            os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_username
            os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_password.get_secret_value()
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(settings.mlflow_experiment)
        exp_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(settings.mlflow_experiment, artifact_location=artifacts)
        )
        self.run_id: str = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def losses(self, losses: list[float]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric("train_loss", float(v), 0, step) for step, v in enumerate(losses, start=1)]
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 900])

    def metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)
