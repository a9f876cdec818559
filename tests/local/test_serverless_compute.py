"""A job that names no compute runs on Azure ML's serverless compute; the local backend runs
it as it runs any step (locally), with no ComputeCluster to wait for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import JobStatus, PipelineRunSpec
from amlops.backends.local.backend import LocalBackend
from amlops.core.source import FieldPath, Position
from amlops.kinds.pipeline import MAIN_STEP, SERVERLESS
from amlops.reconcile import pipeline
from amlops.reconcile.inputs import Inputs, Source
from amlops.reconcile.pipeline import SubmitPipelineRun

from .conftest import WS, amlops, obj, ready, script, status_json

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WRITE = """
    import pathlib, sys
    pathlib.Path(sys.argv[1], "said.txt").write_text(sys.argv[2])
"""


class _Line1:
    def locate(self, path: FieldPath, /) -> Position:
        return Position("job.yml", 1, 1)


def _job(code: Path) -> dict[str, Any]:
    # no `type` (a command job, as load_job takes it) and no compute (serverless)
    return {
        "command": "python write.py ${{outputs.out}} hello",
        "code": str(code),
        "outputs": {"out": {"type": "uri_folder"}},
    }


def test_a_job_without_compute_runs_locally(backend: LocalBackend, tmp_path: Path) -> None:
    script(tmp_path / "code", "write.py", WRITE)
    run = backend.submit_pipeline_run(PipelineRunSpec(WS, "p", _job(tmp_path / "code"), "fp", "x"))
    done = backend.wait_for_run(run.run_id, timeout=60)
    assert done is not None and done.status is JobStatus.COMPLETED, done and done.message
    assert [(s.name, s.compute, s.status) for s in done.steps] == [
        (MAIN_STEP, SERVERLESS, JobStatus.COMPLETED)
    ]
    written = backend.runner.run_dir(run.run_id).rglob("said.txt")
    assert [p.read_text() for p in written] == ["hello"]


def test_the_reconciler_waits_for_no_compute(backend: LocalBackend, tmp_path: Path) -> None:
    script(tmp_path / "code", "write.py", WRITE)
    source = Source(_Line1(), lambda path, value: tmp_path / value)
    desired = pipeline.desired(Inputs(WS, "p", {"job": _job(tmp_path / "code")}, 1, source))
    observed = pipeline.observe(backend, desired)
    assert observed.computes == {}  # serverless is nobody's ComputeCluster
    result = pipeline.reconcile_pipeline(desired, observed, None, NOW)
    assert [type(a) for a in result.actions] == [SubmitPipelineRun], result.outcome


@pytest.mark.slow
def test_up_runs_a_command_job_without_compute(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    script(repo / "src", "write.py", WRITE)
    (repo / "amlops.yaml").write_text(
        "workspace:\n  name: mlw-local\n  subscription: 00000000-0000-0000-0000-000000000000\n"
        "  resourceGroup: rg-local\n  location: westeurope\n"
    )
    (repo / "job.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "name: serverless_job\n"
        "code: src\n"
        "command: python write.py ${{outputs.out}} hello\n"
        "outputs:\n  out:\n    type: uri_folder\n"
        "environment: azureml:AzureML-minimal:1\n"
        "resources:\n  instance_type: Standard_DS3_v2\n"
    )
    state = tmp_path / "state"
    proc = amlops("up", str(repo), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ready(obj(status_json(tmp_path, state), "Pipeline", "serverless_job")) == "True"
