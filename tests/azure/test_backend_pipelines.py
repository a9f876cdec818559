"""The azureml backend's pipeline runs: Azure ML jobs, their steps, outputs and ownership."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlops.backends.azureml.backend import TAG_FINGERPRINT
from amlops.backends.azureml.calls import OwnershipError
from amlops.backends.base import TAG_OWNER, BackendError, JobStatus, PipelineRunSpec
from amlops.core.manifests import load_tree
from amlops.core.provenance import TAG_PIPELINE, TAG_RUN, TAG_TRIGGER
from amlops.reconcile.tree import TreeReconciler
from tests.azure.backend_support import (
    WS,
    MemoryStore,
    converge,
    link_outside,
    make_backend,
    report,
    stored_model,
)
from tests.azure.conftest import AzureEnv
from tests.azure.fake_arm import FakeArm
from tests.azure.pipeline_jobs import ENV, code_folder, named_component, one_component, three_steps

pytestmark = pytest.mark.slow

FINGERPRINT = "sha256:" + "ab" * 32


def _spec(job: dict[str, Any], pipeline: str = "tune", trigger: str = "change") -> PipelineRunSpec:
    return PipelineRunSpec(
        workspace=WS,
        pipeline=pipeline,
        job=job,
        fingerprint=FINGERPRINT,
        trigger=trigger,
        tags={"amlops-commit": "c0ffee", "amlops-manifest": "pipelines/tune.yaml"},
    )


def _steps(run: Any) -> dict[str, JobStatus]:
    return {s.name: s.status for s in run.steps}


def test_a_run_is_a_tagged_job_whose_steps_follow_the_clock_and_registers_its_model_once(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    backend = make_backend(azure_env, source_root=tmp_path)
    submitted = backend.submit_pipeline_run(
        _spec(three_steps(tmp_path, {"name": "tuned", "version": "1"}))
    )
    assert submitted.status in (JobStatus.NOT_STARTED, JobStatus.QUEUED)
    assert fake.log.count("CodeVersions_CreateOrUpdate") == 3  # the three code folders

    body = fake.jobs.job(submitted.run_id)
    assert body is not None
    tags = body["properties"]["tags"]
    assert tags[TAG_OWNER] == "amlops-tests" and tags[TAG_PIPELINE] == "tune"
    assert tags[TAG_FINGERPRINT] == FINGERPRINT and tags[TAG_TRIGGER] == "change"
    assert tags["amlops-commit"] == "c0ffee"
    # amlops registers the output itself (owner, provenance): Azure ML is not asked to
    assert "assetName" not in body["properties"]["outputs"]["model"]

    run = backend.latest_pipeline_run(WS, "tune")
    assert run is not None and run.run_id == submitted.run_id
    assert run.fingerprint == FINGERPRINT and run.trigger == "change"
    assert _steps(run) == {
        "prep": JobStatus.QUEUED,
        "train": JobStatus.NOT_STARTED,
        "evaluate": JobStatus.NOT_STARTED,
    }
    fake.clock.advance(10)
    run = backend.latest_pipeline_run(WS, "tune")
    assert run is not None and run.status is JobStatus.RUNNING
    assert _steps(run)["prep"] is JobStatus.RUNNING
    fake.clock.advance(60)
    run = backend.latest_pipeline_run(WS, "tune")
    assert run is not None
    assert _steps(run)["prep"] is JobStatus.COMPLETED and _steps(run)["train"] is JobStatus.QUEUED
    prep = run.steps[0]
    assert prep.compute == "cpu" and prep.started_at and prep.ended_at
    assert run.outputs == {}

    fake.clock.advance(140)
    done = backend.latest_pipeline_run(WS, "tune")
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert set(_steps(done).values()) == {JobStatus.COMPLETED}
    assert done.outputs == {"model": "tuned:1"}
    model = stored_model(azure_env, "tuned", "1")
    assert model is not None
    props = model["properties"]
    assert props["modelUri"] == f"azureml://jobs/{done.run_id}/outputs/model"
    assert props["tags"][TAG_RUN] == done.run_id and props["tags"][TAG_OWNER] == "amlops-tests"
    assert props["tags"]["amlops-commit"] == "c0ffee"

    # read again, and from a new process: registered once
    assert backend.latest_pipeline_run(WS, "tune") == done
    again = make_backend(azure_env).latest_pipeline_run(WS, "tune")
    assert again is not None and again.outputs == {"model": "tuned:1"}
    assert len(fake.log.find("ModelVersions_CreateOrUpdate", path_contains="/models/tuned/")) == 1


def test_a_failing_step_fails_the_run_with_the_step_and_its_message(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    fake.faults.fail_provisioning("train", kind="jobSteps", code="UserError", message="CUDA OOM")
    backend = make_backend(azure_env)
    backend.submit_pipeline_run(_spec(three_steps(tmp_path, {"name": "tuned"})))
    fake.clock.advance(1000)
    run = backend.latest_pipeline_run(WS, "tune")
    assert run is not None and run.status is JobStatus.FAILED
    assert "train" in run.message and "CUDA OOM" in run.message
    assert _steps(run) == {
        "prep": JobStatus.COMPLETED,
        "train": JobStatus.FAILED,
        "evaluate": JobStatus.NOT_STARTED,
    }
    assert (
        run.outputs == {}
        and len(fake.log.find("ModelVersions_CreateOrUpdate", path_contains="/models/tuned/")) == 0
    )


def test_cancel_starts_the_cancellation_without_waiting(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    fake.durations["jobCancel"] = 30
    backend = make_backend(azure_env)
    run = backend.submit_pipeline_run(_spec(three_steps(tmp_path)))
    fake.clock.advance(20)
    backend.cancel_pipeline_run(WS, run.run_id)
    assert fake.log.count("Jobs_Cancel", status=202) == 1
    active = backend.latest_pipeline_run(WS, "tune")
    assert active is not None and active.status is JobStatus.RUNNING  # CancelRequested
    backend.cancel_pipeline_run(WS, run.run_id)  # asked already: not again
    assert fake.log.count("Jobs_Cancel") == 1
    fake.clock.advance(30)
    canceled = backend.latest_pipeline_run(WS, "tune")
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert _steps(canceled)["prep"] is JobStatus.CANCELED


def test_a_registry_component_is_passed_through_and_a_missing_workspace_one_is_refused(
    azure_env: AzureEnv, fake: FakeArm
) -> None:
    backend = make_backend(azure_env)
    registry = "azureml://registries/azureml/components/finetune_text_generation/versions/1"
    job = one_component("finetune", registry)
    run = backend.submit_pipeline_run(_spec(job))
    body = fake.jobs.job(run.run_id)
    assert body is not None and body["properties"]["jobs"]["finetune"]["componentId"] == registry

    missing = {**job, "jobs": {"finetune": {"type": "command", "component": "azureml:absent:2"}}}
    with pytest.raises(BackendError) as info:
        backend.submit_pipeline_run(_spec(missing, pipeline="other"))
    assert "absent" in str(info.value)


def test_a_named_component_is_registered_by_content_once(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    job = one_component("train", named_component(tmp_path, "trainer"))
    backend.submit_pipeline_run(_spec(job))
    make_backend(azure_env).submit_pipeline_run(_spec(job, trigger="manual"))
    state = fake.state
    versions = state.children(
        state.resource_id(azure_env.workspace, "components", "trainer"), "versions"
    )
    assert [v["name"] for v in versions] == ["1"]
    (tmp_path / "src" / "trainer" / "trainer.py").write_text("print('changed')\n")
    run = backend.submit_pipeline_run(_spec(job, trigger="manual"))
    versions = state.children(
        state.resource_id(azure_env.workspace, "components", "trainer"), "versions"
    )
    assert [v["name"] for v in versions] == ["1", "2"]
    body = fake.jobs.job(run.run_id)
    assert body is not None
    assert body["properties"]["jobs"]["train"]["componentId"].endswith(
        "/components/trainer/versions/2"
    )


def test_another_owners_job_is_neither_read_as_ours_nor_canceled(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    theirs = make_backend(azure_env, owner="another-cluster")
    run = theirs.submit_pipeline_run(_spec(three_steps(tmp_path)))
    ours = make_backend(azure_env)
    assert ours.latest_pipeline_run(WS, "tune") is None
    with pytest.raises(OwnershipError) as info:
        ours.cancel_pipeline_run(WS, run.run_id)
    assert "another-cluster" in str(info.value)
    assert fake.log.count("Jobs_Cancel") == 0


PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: tune
spec:
  workspace: dev
  job:
    type: pipeline
    settings: {default_compute: azureml:cpu}
    outputs:
      model: {type: custom_model, name: tuned}
    jobs:
      train:
        type: command
        code: ./src/train
        command: python train.py --out ${{outputs.model}}
        environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
        outputs:
          model: ${{parent.outputs.model}}
"""


def test_the_reconciler_runs_the_pipeline_once_per_fingerprint(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    code_folder(tmp_path, "train")
    (tmp_path / "tune.yaml").write_text(PIPELINE)
    backend = make_backend(azure_env, source_root=tmp_path)
    reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)
    manifests = load_tree([tmp_path], root=tmp_path).manifests
    reports = converge(reconciler, manifests, fake.clock)
    assert report(reports, "Pipeline", "tune").outcome.reason == "Succeeded"
    assert fake.log.count("Jobs_CreateOrUpdate") == 1
    assert stored_model(azure_env, "tuned", "1") is not None

    fake.log.reset()
    fake.clock.advance(600)
    converge(reconciler, manifests, fake.clock)
    assert fake.log.count("Jobs_CreateOrUpdate") == 0 and fake.log.writes == 0

    (tmp_path / "src" / "train" / "train.py").write_text("print('v2')\n")
    reports = converge(reconciler, load_tree([tmp_path], root=tmp_path).manifests, fake.clock)
    assert fake.log.count("Jobs_CreateOrUpdate") == 1
    assert report(reports, "Pipeline", "tune").outcome.reason == "Succeeded"
    assert stored_model(azure_env, "tuned", "2") is not None


def test_finished_runs_of_many_pipelines_are_read_from_one_list(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    writer = make_backend(azure_env)
    for name in ("p1", "p2", "p3"):
        writer.submit_pipeline_run(_spec(three_steps(tmp_path), pipeline=name))
    fake.clock.advance(1000)
    reader = make_backend(azure_env)  # a new process: nothing remembered
    for name in ("p1", "p2", "p3"):
        run = reader.latest_pipeline_run(WS, name)
        assert run is not None and run.status is JobStatus.COMPLETED
    fake.log.reset()
    for name in ("p1", "p2", "p3"):  # the next drift cycle, within the snapshot's TTL
        run = reader.latest_pipeline_run(WS, name)
        assert run is not None and run.pipeline == name
    assert [r.path for r in fake.log.records if "/jobs" in r.path or "/history/" in r.path] == []


def test_a_command_job_is_one_step_and_registers_its_output(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    job = {
        "type": "command",
        "code": str(code_folder(tmp_path, "train")),
        "command": "python train.py --out ${{outputs.model}}",
        "environment": ENV,
        "compute": "azureml:cpu",
        "outputs": {"model": {"type": "mlflow_model", "name": "single"}},
    }
    backend.submit_pipeline_run(_spec(job))
    fake.clock.advance(100)
    run = backend.latest_pipeline_run(WS, "tune")
    assert run is not None and run.status is JobStatus.COMPLETED
    assert [(s.name, s.status, s.compute) for s in run.steps] == [
        ("main", JobStatus.COMPLETED, "cpu")
    ]
    assert run.outputs == {"model": "single:1"}


def test_a_code_folder_linking_out_of_the_repository_is_never_uploaded(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    job = three_steps(repo)
    link_outside(tmp_path, repo / "src" / "train" / "extra.txt")
    backend = make_backend(azure_env, source_root=repo)
    with pytest.raises(BackendError, match="outside"):
        backend.submit_pipeline_run(_spec(job))
    log = azure_env.fake.log
    assert log.find(path_contains="/codes/") == [] and log.find(path_contains="/jobs") == []


def test_the_newest_run_is_the_latest_and_each_submission_has_its_own_name(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    first = backend.submit_pipeline_run(_spec(three_steps(tmp_path)))
    fake.clock.advance(1000)
    second = backend.submit_pipeline_run(_spec(three_steps(tmp_path), trigger="manual"))
    assert (first.run_id, second.run_id) == ("tune-1-abababababab", "tune-2-abababababab")
    latest = backend.latest_pipeline_run(WS, "tune")
    assert latest is not None and latest.run_id == second.run_id and latest.trigger == "manual"
    fresh = make_backend(azure_env).latest_pipeline_run(WS, "tune")  # after a restart too
    assert fresh is not None and fresh.run_id == second.run_id


def test_a_pinned_component_version_with_other_content_is_refused(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    job = one_component("score", named_component(tmp_path, "scorer", version="3"))
    run = backend.submit_pipeline_run(_spec(job))
    body = fake.jobs.job(run.run_id)
    assert body is not None
    assert body["properties"]["jobs"]["score"]["componentId"].endswith("/scorer/versions/3")
    (tmp_path / "src" / "scorer" / "scorer.py").write_text("print('changed')\n")
    with pytest.raises(BackendError) as info:
        make_backend(azure_env).submit_pipeline_run(_spec(job, trigger="manual"))
    assert "scorer:3" in str(info.value)
    assert fake.log.count("Jobs_CreateOrUpdate") == 1
