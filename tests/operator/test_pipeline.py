"""Pipeline resources: waiting for compute, running, reporting per-step state."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.backends.base import ComputeInfo
from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    reason_is,
)

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def pipeline_spec(compute: str) -> dict[str, Any]:
    return {
        "workspace": "ws",
        "job": {
            "type": "pipeline",
            "settings": {"default_compute": f"azureml:{compute}"},
            "jobs": {
                "hello": {
                    "type": "command",
                    "command": "python -c \"print('hello from the pipeline')\"",
                    "environment": "azureml:runtime:1",
                }
            },
        },
    }


def test_pipeline_waits_for_its_compute_then_runs(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    compute = f"cpu-{namespace}"
    commit = {"amlops.io/git-commit": "feedbeef"}
    kube.create(namespace, "Pipeline", "p-run", pipeline_spec(compute), commit)
    waiting = kube.wait(namespace, "Pipeline", "p-run", reason_is("DependencyNotReady"))
    assert f"ComputeCluster {compute} in workspace ws" in condition(waiting)["message"]
    assert "runId" not in waiting["status"]

    # Pulumi provisions compute; for the local backend the test stands in for it
    view = BackendView(op)
    try:
        view.backend.put_compute(ComputeInfo("ws", compute, 1))
        obj = kube.wait(namespace, "Pipeline", "p-run", is_ready, timeout=60, what="a run")
        run = view.backend.latest_pipeline_run("ws", "p-run")
    finally:
        view.close()
    assert run is not None and run.run_id == obj["status"]["runId"]
    # the run carries the commit and the object that made it
    assert run.tags["amlops-commit"] == "feedbeef"
    assert run.tags["amlops-object"] == f"{namespace}/p-run"

    status = obj["status"]
    assert condition(obj)["reason"] == "Succeeded"
    assert status["phase"] == "Completed"
    assert status["steps"] == {"hello": {"state": "Completed", "exitCode": 0}}
    assert status["runId"] in condition(obj)["message"]
    reasons = [e.reason for e in kube.events(namespace, "p-run")]
    assert reasons[0] == "DependencyNotReady" and reasons[-1] == "Succeeded"
