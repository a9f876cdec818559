"""Job shapes Azure ML accepts that ``parse_job`` reads as Azure ML does: a step (or a command
job) that names no compute runs on serverless compute, and a job without ``type`` that has a
``command`` (and no ``jobs``) is a command job, as ``load_job`` takes it."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.core.findings import Finding
from amlops.core.locator import ObjectLocator
from amlops.core.validate import validate_paths
from amlops.kinds import pipeline
from amlops.kinds.pipeline import MAIN_STEP, SERVERLESS, JobSpecError, parse_job
from tests.platform_text import cluster, workspace

_PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: train
spec:
  workspace: mlw-dev
  job:
{job}"""


def _findings(job: str, *, sdk: bool = False) -> list[tuple[int, str, str]]:
    texts = {
        "workspace.yaml": workspace(),
        "cluster.yaml": cluster(),
        "train.yaml": _PIPELINE.format(job=job),
    }
    report = validate_paths([], texts=texts, sdk=sdk)
    errors: list[Finding] = report.errors
    assert all(f.file == "train.yaml" for f in errors), errors
    return [(f.line, f.rule, f.field or "") for f in errors]


def _command_step(**extra: Any) -> dict[str, Any]:
    return {"type": "command", "command": "echo hi", **extra}


# -- serverless compute ------------------------------------------------------------------------


def test_a_command_job_without_compute_runs_on_serverless_compute() -> None:
    graph = parse_job({"type": "command", "command": "echo hi"})
    assert [(s.name, s.compute) for s in graph.steps] == [(MAIN_STEP, SERVERLESS)]
    assert graph.computes == frozenset()  # nothing to wait for, no ComputeCluster to check


def test_a_step_without_compute_runs_on_serverless_next_to_one_on_a_cluster() -> None:
    graph = parse_job(
        {
            "type": "pipeline",
            "jobs": {
                "prep": _command_step(),
                "train": _command_step(compute="azureml:gpu"),
                "named": _command_step(compute="azureml:serverless"),
            },
        }
    )
    assert {s.name: s.compute for s in graph.steps} == {
        "prep": SERVERLESS,
        "train": "gpu",
        "named": SERVERLESS,
    }
    assert graph.computes == frozenset({"gpu"})


def test_the_default_compute_still_applies_to_steps_without_one() -> None:
    graph = parse_job(
        {
            "type": "pipeline",
            "settings": {"default_compute": "azureml:gpu"},
            "jobs": {"a": _command_step()},
        }
    )
    assert graph.step("a").compute == "gpu" and graph.computes == frozenset({"gpu"})


def test_a_compute_that_is_no_name_is_still_refused_at_its_field() -> None:
    with pytest.raises(JobSpecError) as caught:
        parse_job({"type": "pipeline", "jobs": {"a": _command_step(compute=["gpu"])}})
    assert caught.value.field == ("jobs", "a", "compute")


def test_validate_accepts_jobs_without_compute_and_checks_no_compute_reference() -> None:
    job = "    type: command\n    command: echo hi\n    environment: azureml:AzureML-minimal:1\n"
    assert _findings(job, sdk=True) == []
    steps = (
        "    type: pipeline\n    jobs:\n      a:\n        type: command\n"
        "        command: echo hi\n        environment: azureml:AzureML-minimal:1\n"
    )
    assert _findings(steps, sdk=True) == []


def test_a_missing_cluster_is_still_a_reference_finding_at_its_line() -> None:
    job = "    type: command\n    command: echo hi\n    compute: azureml:cpu\n"
    assert _findings(job) == [(10, "ref.compute", "spec.job.compute")]


# -- a job without `type` --------------------------------------------------------------------


def test_a_job_without_type_with_a_command_is_a_command_job() -> None:
    assert pipeline.job_type({"command": "echo hi"}) == "command"
    assert pipeline.job_type({"command": "echo hi", "jobs": {}}) == "pipeline"
    assert pipeline.job_type({"jobs": {"a": _command_step()}}) == "pipeline"
    assert pipeline.job_type({"type": "sweep", "command": "x"}) == "sweep"
    graph = parse_job({"command": "python t.py --in ${{inputs.x}}", "inputs": {"x": 1}})
    assert [s.name for s in graph.steps] == [MAIN_STEP]
    assert graph.steps[0].command == "python t.py --in ${{inputs.x}}"


def test_an_untyped_command_job_validates_and_names_its_environment_and_code() -> None:
    job = (
        "    command: echo hi\n"
        "    environment: azureml:AzureML-minimal:1\n"
        "    compute: azureml:gpu\n"
    )
    assert _findings(job, sdk=True) == []
    spec = {"workspace": "mlw-dev", "job": {"command": "echo", "code": "src", "environment": "e"}}
    assert list(pipeline.KIND.environments(spec)) == [(("spec", "job", "environment"), "e")]
    parsed, findings = pipeline.parse(spec, ObjectLocator("Pipeline ns/train"))
    assert findings == [] and parsed is not None
    assert parsed.local_files == ((("code",), "src"),)


def test_an_untyped_job_with_neither_command_nor_jobs_is_a_schema_finding() -> None:
    assert _findings("    name: nothing\n") == [(7, "schema", "spec.job")]
