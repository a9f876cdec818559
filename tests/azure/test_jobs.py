"""Pipeline jobs through the real SDK against the fake: submit, steps on the clock, cancel."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.storage.blob import ContainerClient

from tests.azure.conftest import AzureEnv
from tests.azure.deadline import within
from tests.azure.fake_arm import FakeArm
from tests.azure.pipeline_jobs import ENV, one_component, three_steps

pytestmark = pytest.mark.slow


def load(job: dict[str, Any], base: Path | None = None) -> Any:
    """What ``az ml job create -f`` makes of the YAML (relative paths from ``base``)."""
    from azure.ai.ml import load_job

    origin = str((base or Path.cwd()) / "job.yml")
    return load_job(io.StringIO(yaml.safe_dump(job)), relative_origin=origin)


def pipeline_job(tmp_path: Path, **extra: Any) -> Any:
    """prep -> train -> evaluate, each with its own local code folder."""
    return load({**three_steps(tmp_path), "experiment_name": "amlops-tests", **extra}, tmp_path)


def _submit(azure_env: AzureEnv, job: Any, **kwargs: Any) -> Any:
    ml = azure_env.ml_client()
    return within(90, lambda: ml.jobs.create_or_update(job, **kwargs))


def _statuses(azure_env: AzureEnv, name: str) -> dict[str, str]:
    ml = azure_env.ml_client()
    children = within(30, lambda: list(ml.jobs.list(parent_job_name=name)))
    return {c.display_name: c.status for c in children}


def test_a_pipeline_job_uploads_its_code_registers_components_and_runs_on_the_clock(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    fake.durations.update(jobQueued=10, jobStep=60)
    created = _submit(azure_env, pipeline_job(tmp_path), tags={"team": "ml"})
    assert created.status in ("NotStarted", "Queued")
    ops = fake.log.by_operation()
    assert ops["CodeVersions_CreateOrUpdate"] == 3, ops
    assert ops["ComponentVersions_CreateOrUpdate"] == 3, ops
    assert ops["Jobs_CreateOrUpdate"] == 1, ops

    # each step's component names its code version, whose files reached Azurite
    body = fake.jobs.job(created.name)
    assert body is not None and body["properties"]["tags"]["team"] == "ml"
    for step, node in body["properties"]["jobs"].items():
        component = fake.state.get(node["componentId"])
        assert component is not None
        code = fake.state.get(
            component["properties"]["componentSpec"]["code"].removeprefix("azureml:")
        )
        assert code is not None
        container, prefix = code["properties"]["codeUri"].split("/", 4)[3:5]
        blobs = ContainerClient(
            azure_env.storage.blob_url,
            container,
            credential={
                "account_name": azure_env.storage.name,
                "account_key": azure_env.storage.key,
            },
        )
        names = [b.name for b in blobs.list_blobs(name_starts_with=prefix)]
        assert names == [f"{prefix}/{step}.py"], names

    assert _statuses(azure_env, created.name) == {"prep": "Queued"}
    fake.clock.advance(10)
    assert _statuses(azure_env, created.name) == {"prep": "Running"}
    assert fake.jobs.job(created.name)["properties"]["status"] == "Running"  # type: ignore[index]
    fake.clock.advance(60)
    assert _statuses(azure_env, created.name) == {"prep": "Completed", "train": "Queued"}
    fake.clock.advance(140)
    assert set(_statuses(azure_env, created.name).values()) == {"Completed"}
    ml = azure_env.ml_client()
    done = within(30, lambda: ml.jobs.get(created.name))
    assert done.status == "Completed"
    uri = done.outputs["model"].path
    assert uri.startswith("azureml://datastores/workspaceblobstore/paths/"), uri
    children = within(30, lambda: list(ml.jobs.list(parent_job_name=created.name)))
    assert {c.compute for c in children} == {"cpu"}


def test_a_failing_step_fails_the_run_with_its_message_and_later_steps_never_start(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    fake.faults.fail_provisioning(
        "train", kind="jobSteps", code="UserError", message="OOM in train"
    )
    created = _submit(azure_env, pipeline_job(tmp_path))
    fake.clock.advance(1000)
    assert _statuses(azure_env, created.name) == {"prep": "Completed", "train": "Failed"}
    job = fake.jobs.job(created.name)
    assert job is not None and job["properties"]["status"] == "Failed"
    (train,) = [c for c in fake.jobs.children(created.name) if c["displayName"] == "train"]
    assert train["error"]["error"]["message"] == "OOM in train"


def test_cancel_is_a_long_running_operation_and_stops_the_active_step(
    azure_env: AzureEnv, fake: FakeArm, tmp_path: Path
) -> None:
    created = _submit(azure_env, pipeline_job(tmp_path))
    fake.clock.advance(30)
    ml = azure_env.ml_client()
    poller = within(30, lambda: ml.jobs.begin_cancel(created.name))
    within(60, lambda: poller.result())
    assert fake.log.count("Jobs_Cancel", status=202) == 1
    assert within(30, lambda: ml.jobs.get(created.name)).status == "Canceled"
    assert _statuses(azure_env, created.name) == {"prep": "Canceled"}
    fake.clock.advance(1000)
    assert _statuses(azure_env, created.name) == {"prep": "Canceled"}


def test_list_filters_by_tag_and_property_and_pages(azure_env: AzureEnv, fake: FakeArm) -> None:
    from azure.ai.ml import command

    for i in range(3):
        job = command(
            command="echo hi",
            environment=ENV,
            compute="cpu",
            tags={"amlops-pipeline": "p1" if i < 2 else "p2"},
            properties={"run": str(i)},
        )
        _submit(azure_env, job)
    ml = azure_env.ml_client()
    tagged = within(30, lambda: list(ml.jobs.list(tag="amlops-pipeline")))
    assert len(tagged) == 3
    one = within(30, lambda: list(ml.jobs.list(properties="run=1")))
    assert [j.properties["run"] for j in one] == ["1"]
    assert within(30, lambda: list(ml.jobs.list(tag="other"))) == []


def test_a_missing_workspace_component_is_refused_and_a_registry_one_passes(
    azure_env: AzureEnv, fake: FakeArm
) -> None:
    from azure.core.exceptions import HttpResponseError

    registry = "azureml://registries/azureml/components/train_model/versions/3"
    job = one_component("a", registry)
    created = _submit(azure_env, load(job))
    body = fake.jobs.job(created.name)
    assert body is not None and body["properties"]["jobs"]["a"]["componentId"] == registry

    missing = {**job, "jobs": {"a": {"type": "command", "component": "azureml:nothing:1"}}}
    with pytest.raises(HttpResponseError) as info:
        _submit(azure_env, load(missing))
    assert info.value.status_code == 400 and "nothing" in str(info.value)
