"""validate reports what the Pipeline kind's parse refuses (spec.invalid at the field's line),
also without the SDK: whatever validate accepts, ``up`` runs."""

from __future__ import annotations

from amlops.core.findings import Finding
from amlops.core.validate import validate_paths
from tests.platform_text import cluster, workspace

_PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: train
spec:
  workspace: mlw-dev
  schedule:
    cron: "0 3 * * 1"
    timeZone: Europe/Berlin
  job:
    type: pipeline
    settings:
      default_compute: azureml:gpu
    jobs:
      prep:
        type: command
        command: echo prep > ${{outputs.data}}
        environment: azureml:AzureML-sklearn-1.5@latest
        outputs:
          data: {type: uri_folder}
      train:
        type: command
        command: echo train ${{inputs.data}}
        environment: azureml:AzureML-sklearn-1.5@latest
        inputs:
          data: ${{parent.jobs.prep.outputs.data}}
"""


def _invalid(pipeline: str, *, sdk: bool = False) -> list[tuple[int, str, str]]:
    texts = {"workspace.yaml": workspace(), "cluster.yaml": cluster(), "train.yaml": pipeline}
    report = validate_paths([], texts=texts, sdk=sdk)
    errors: list[Finding] = report.errors
    assert all(f.file == "train.yaml" for f in errors), errors
    return [(f.line, f.rule, f.field or "") for f in errors]


def test_a_good_pipeline_has_no_findings() -> None:
    assert _invalid(_PIPELINE) == []


def test_a_bad_cron_is_reported_at_its_line() -> None:
    text = _PIPELINE.replace('cron: "0 3 * * 1"', "cron: not a cron")
    assert _invalid(text) == [(8, "spec.invalid", "spec.schedule.cron")]


def test_an_unknown_time_zone_is_reported_at_its_line() -> None:
    text = _PIPELINE.replace("timeZone: Europe/Berlin", "timeZone: Mars/Olympus")
    assert _invalid(text) == [(9, "spec.invalid", "spec.schedule.timeZone")]


def test_a_cycle_is_reported_at_the_jobs() -> None:
    # prep reads what train writes, and train what prep writes
    text = _PIPELINE.replace(
        "          data: {type: uri_folder}\n",
        "          data: {type: uri_folder}\n"
        "        inputs:\n"
        "          back: ${{parent.jobs.train.outputs.model}}\n",
    ).replace(
        "          data: ${{parent.jobs.prep.outputs.data}}\n",
        "          data: ${{parent.jobs.prep.outputs.data}}\n"
        "        outputs:\n"
        "          model: {type: uri_folder}\n",
    )
    assert _invalid(text) == [(14, "spec.invalid", "spec.job.jobs")]


def test_a_step_with_no_command_is_reported_without_the_sdk() -> None:
    text = _PIPELINE.replace("        command: echo train ${{inputs.data}}\n", "")
    # the field is not written: the line is its step's
    assert _invalid(text, sdk=False) == [(21, "spec.invalid", "spec.job.jobs.train.command")]


def test_a_step_the_runner_cannot_run_is_reported_at_its_type() -> None:
    text = _PIPELINE.replace(
        "        type: command\n        command: echo train",
        "        type: spark\n        command: echo train",
    )
    assert (22, "spec.invalid", "spec.job.jobs.train.type") in _invalid(text)


def test_a_missing_binding_is_reported_once_by_its_reference_check() -> None:
    text = _PIPELINE.replace("parent.jobs.prep.outputs.data", "parent.jobs.prep.outputs.nope")
    assert _invalid(text) == [(26, "ref.binding", "spec.job.jobs.train.inputs.data")]
