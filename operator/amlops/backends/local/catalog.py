"""The local backend's asset catalog: what Azure ML would hold, in the state directory's SQLite
file (``db.py``).

Model versions, compute, pipeline runs with their steps, endpoints and deployments. The object
records the local driver keeps per manifest object are not assets: they live in the object
store (``objects.py``), in the same file and behind the same connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlops.backends.base import (
    ComputeInfo,
    DeploymentState,
    JobStatus,
    ModelVersion,
    PipelineRun,
    ProvisioningState,
    StepRun,
)
from amlops.backends.local.db import Database, Transaction, dumps

_UPDATE_STEP = (
    "UPDATE steps SET status = ?, exit_code = ?, started_at = ?, ended_at = ?, "
    "log = ?, message = ? WHERE run_id = ? AND name = ?"
)


class AssetCatalog:
    """Reads and writes of the assets; writes that must land with others (a run's end and the
    model versions it registers) take the caller's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write of the shared file (see ``Database.transaction``)."""
        with self.db.transaction() as tx:
            yield tx

    # -- models ----------------------------------------------------------------------------

    def _model(self, row: sqlite3.Row, root: Path) -> ModelVersion:
        ws, name, version = row["workspace"], row["name"], row["version"]
        return ModelVersion(
            workspace=ws,
            name=name,
            version=version,
            asset_id=f"azureml://locations/local/workspaces/{ws}/models/{name}/versions/{version}",
            digest=row["digest"],
            type=row["type"],
            description=row["description"],
            tags=json.loads(row["tags"]),
            created_at=row["created_at"],
            location=str(root / row["location"]),
        )

    def get_model_version(
        self, workspace: str, name: str, version: str, root: Path
    ) -> ModelVersion | None:
        row = self.db.fetch_one(
            "SELECT * FROM model_versions WHERE workspace = ? AND name = ? AND version = ?",
            (workspace, name, version),
        )
        return self._model(row, root) if row else None

    def list_model_versions(self, workspace: str, name: str, root: Path) -> list[ModelVersion]:
        rows = self.db.fetch_all(
            "SELECT * FROM model_versions WHERE workspace = ? AND name = ? ORDER BY seq",
            (workspace, name),
        )
        return [self._model(r, root) for r in rows]

    def count_model_versions(self) -> int:
        row = self.db.fetch_one("SELECT COUNT(*) AS n FROM model_versions")
        return int(row["n"]) if row else 0

    def next_model_version(self, workspace: str, name: str) -> str:
        """Azure ML's auto-increment: one more than the highest integer version."""
        rows = self.db.fetch_all(
            "SELECT version FROM model_versions WHERE workspace = ? AND name = ?", (workspace, name)
        )
        numbers = [int(r["version"]) for r in rows if str(r["version"]).isdigit()]
        return str(max(numbers, default=0) + 1)

    # -- compute ---------------------------------------------------------------------------

    def insert_model_version(self, tx: Transaction, version: ModelVersion, location: str) -> None:
        seq = tx.scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM model_versions")
        tx.execute(
            "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version.workspace,
                version.name,
                version.version,
                version.digest,
                version.type,
                version.description,
                dumps(dict(version.tags)),
                location,
                version.created_at,
                seq,
            ),
        )

    def delete_model_version(
        self, tx: Transaction, workspace: str, name: str, version: str
    ) -> None:
        tx.execute(
            "DELETE FROM model_versions WHERE workspace = ? AND name = ? AND version = ?",
            (workspace, name, version),
        )

    def get_compute(self, workspace: str, name: str) -> ComputeInfo | None:
        row = self.db.fetch_one(
            "SELECT * FROM computes WHERE workspace = ? AND name = ?", (workspace, name)
        )
        if row is None:
            return None
        return ComputeInfo(workspace, name, int(row["max_instances"]), row["vm_size"])

    def put_compute(self, info: ComputeInfo) -> None:
        if self.get_compute(info.workspace, info.name) == info:
            return
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO computes VALUES (?, ?, ?, ?)",
                (info.workspace, info.name, info.max_instances, info.vm_size),
            )

    # -- runs ------------------------------------------------------------------------------

    def _run(self, row: sqlite3.Row) -> PipelineRun:
        steps = self.db.fetch_all(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY position", (row["run_id"],)
        )
        return PipelineRun(
            run_id=row["run_id"],
            workspace=row["workspace"],
            pipeline=row["pipeline"],
            fingerprint=row["fingerprint"],
            trigger=row["trigger"],
            status=JobStatus(row["status"]),
            steps=tuple(
                StepRun(
                    name=s["name"],
                    status=JobStatus(s["status"]),
                    compute=s["compute"],
                    exit_code=s["exit_code"],
                    started_at=s["started_at"],
                    ended_at=s["ended_at"],
                    log=s["log"],
                    message=s["message"],
                )
                for s in steps
            ),
            created_at=row["created_at"],
            ended_at=row["ended_at"],
            message=row["message"],
            outputs=json.loads(row["outputs"]),
            interrupted=bool(row["interrupted"]),
            tags=json.loads(row["tags"]),
        )

    def get_run(self, run_id: str) -> PipelineRun | None:
        row = self.db.fetch_one("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return self._run(row) if row else None

    def latest_run(self, workspace: str, pipeline: str) -> PipelineRun | None:
        row = self.db.fetch_one(
            "SELECT * FROM runs WHERE workspace = ? AND pipeline = ? ORDER BY seq DESC LIMIT 1",
            (workspace, pipeline),
        )
        return self._run(row) if row else None

    def list_runs(self, workspace: str, pipeline: str) -> list[PipelineRun]:
        rows = self.db.fetch_all(
            "SELECT * FROM runs WHERE workspace = ? AND pipeline = ? ORDER BY seq",
            (workspace, pipeline),
        )
        return [self._run(r) for r in rows]

    def run_owner(self, run_id: str) -> dict[str, Any]:
        row = self.db.fetch_one("SELECT owner FROM runs WHERE run_id = ?", (run_id,))
        return dict(json.loads(row["owner"])) if row else {}

    def active_runs(self) -> list[PipelineRun]:
        rows = self.db.fetch_all(
            "SELECT * FROM runs WHERE status IN (?, ?, ?) ORDER BY seq",
            (JobStatus.NOT_STARTED, JobStatus.QUEUED, JobStatus.RUNNING),
        )
        return [self._run(r) for r in rows]

    def insert_run(self, run: PipelineRun, owner: Mapping[str, Any]) -> None:
        with self.transaction() as tx:
            seq = tx.scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs")
            tx.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.workspace,
                    run.pipeline,
                    run.fingerprint,
                    run.trigger,
                    run.status,
                    run.message,
                    dumps(dict(run.outputs)),
                    dumps(dict(run.tags)),
                    int(run.interrupted),
                    run.created_at,
                    run.ended_at,
                    dumps(dict(owner)),
                    seq,
                ),
            )
            for position, step in enumerate(run.steps):
                tx.execute(
                    "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        step.name,
                        position,
                        step.status,
                        step.compute,
                        step.exit_code,
                        step.started_at,
                        step.ended_at,
                        step.log,
                        step.message,
                    ),
                )

    def update_step(self, run_id: str, step: StepRun) -> None:
        with self.transaction() as tx:
            tx.execute(_UPDATE_STEP, _step_values(run_id, step))

    def set_run_status(self, run_id: str, status: JobStatus, message: str = "") -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE runs SET status = ?, message = ? WHERE run_id = ?",
                (status, message, run_id),
            )

    def finish_run(
        self,
        tx: Transaction,
        run: PipelineRun,
    ) -> None:
        """Record a run's end inside ``tx`` (the caller registers its outputs in the same one)."""
        tx.execute(
            "UPDATE runs SET status = ?, message = ?, ended_at = ?, outputs = ?, interrupted = ? "
            "WHERE run_id = ?",
            (
                run.status,
                run.message,
                run.ended_at,
                dumps(dict(run.outputs)),
                int(run.interrupted),
                run.run_id,
            ),
        )
        for step in run.steps:
            tx.execute(_UPDATE_STEP, _step_values(run.run_id, step))

    # -- endpoints and deployments ---------------------------------------------------------

    def get_endpoint_row(self, workspace: str, name: str) -> dict[str, Any] | None:
        row = self.db.fetch_one(
            "SELECT * FROM endpoints WHERE workspace = ? AND name = ?", (workspace, name)
        )
        if row is None:
            return None
        data = dict(row)
        data["traffic"] = json.loads(data["traffic"])
        data["mirror_traffic"] = json.loads(data["mirror_traffic"])
        data["tags"] = json.loads(data["tags"])
        return data

    def put_endpoint_row(self, row: Mapping[str, Any]) -> None:
        current = self.get_endpoint_row(row["workspace"], row["name"])
        if current == {"tags": {}, **row}:
            return
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO endpoints (workspace, name, auth_mode, port, traffic, "
                "mirror_traffic, description, message, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["workspace"],
                    row["name"],
                    row["auth_mode"],
                    row["port"],
                    dumps(row["traffic"]),
                    dumps(row["mirror_traffic"]),
                    row["description"],
                    row["message"],
                    dumps(dict(row.get("tags") or {})),
                ),
            )

    def delete_endpoint_row(self, workspace: str, name: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM deployments WHERE workspace = ? AND endpoint = ?", (workspace, name)
            )
            tx.execute("DELETE FROM endpoints WHERE workspace = ? AND name = ?", (workspace, name))

    def list_deployment_rows(self, workspace: str, endpoint: str) -> list[dict[str, Any]]:
        rows = self.db.fetch_all(
            "SELECT * FROM deployments WHERE workspace = ? AND endpoint = ? ORDER BY name",
            (workspace, endpoint),
        )
        return [_deployment_row(r) for r in rows]

    def all_deployment_rows(self) -> list[dict[str, Any]]:
        rows = self.db.fetch_all("SELECT * FROM deployments ORDER BY workspace, endpoint, name")
        return [_deployment_row(r) for r in rows]

    def put_deployment_row(self, row: Mapping[str, Any]) -> None:
        current = self.db.fetch_one(
            "SELECT * FROM deployments WHERE workspace = ? AND endpoint = ? AND name = ?",
            (row["workspace"], row["endpoint"], row["name"]),
        )
        if current is not None and _deployment_row(current) == {"tags": {}, **row}:
            return
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO deployments (workspace, endpoint, name, model, "
                "fingerprint, state, message, port, log, tags) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["workspace"],
                    row["endpoint"],
                    row["name"],
                    row["model"],
                    row["fingerprint"],
                    row["state"],
                    row["message"],
                    row["port"],
                    row["log"],
                    dumps(dict(row.get("tags") or {})),
                ),
            )

    def delete_deployment_row(self, workspace: str, endpoint: str, name: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM deployments WHERE workspace = ? AND endpoint = ? AND name = ?",
                (workspace, endpoint, name),
            )


def _step_values(run_id: str, step: StepRun) -> tuple[Any, ...]:
    """The parameters of ``_UPDATE_STEP``: a step's progress and, last, which step it is."""
    return (
        step.status,
        step.exit_code,
        step.started_at,
        step.ended_at,
        step.log,
        step.message,
        run_id,
        step.name,
    )


def _deployment_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["tags"] = json.loads(data["tags"])
    return data


def deployment_state(row: Mapping[str, Any]) -> DeploymentState:
    return DeploymentState(
        workspace=row["workspace"],
        endpoint=row["endpoint"],
        name=row["name"],
        model=row["model"],
        provisioning_state=ProvisioningState(row["state"]),
        fingerprint=row["fingerprint"],
        message=row["message"],
        log=row["log"],
        tags=dict(row.get("tags") or {}),
    )
