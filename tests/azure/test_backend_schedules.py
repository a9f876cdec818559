"""A Pipeline's ``spec.schedule`` on the azureml backend is an Azure ML schedule: created with the
cron, the Windows name of the time zone and the pipeline job, updated when the cron changes,
disabled while suspended and enabled again, put back when changed behind amlops's back, deleted
with the object or its ``spec.schedule``; another owner's schedule is left alone; the status
says when the next run is; a reconcile with nothing to change writes nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import TAG_OWNER, BackendError, PipelineScheduleSpec
from amlops.core.manifests import Manifest, load_tree
from amlops.core.provenance import TAG_PIPELINE, TAG_TRIGGER
from amlops.reconcile.conditions import Phase
from amlops.reconcile.pipeline import next_fire
from amlops.reconcile.tree import ObjectReport, TreeReconciler
from tests.azure.backend_support import OWNER, MemoryStore, make_backend, report
from tests.azure.conftest import AzureEnv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.usefixtures("fake"),  # the fake cloud with a cpu compute
]

NAME = "retrain"
PARIS = "Romance Standard Time"  # what Azure ML calls Europe/Paris

PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: {name}
spec:
  workspace: dev
  suspend: {suspend}
  runOnChange: false
{schedule}  job:
    type: pipeline
    experiment_name: retrain
    settings: {{default_compute: azureml:cpu}}
    jobs:
      train:
        type: command
        code: ./src
        command: python train.py
        environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
"""
SCHEDULE = """\
  schedule:
    cron: "{cron}"
    timeZone: Europe/Paris
"""


def _reconciler(azure_env: AzureEnv, owner: str = OWNER, **overrides: Any) -> TreeReconciler:
    return TreeReconciler(make_backend(azure_env, owner=owner, **overrides), MemoryStore())


def _manifests(
    tmp_path: Path, cron: str | None = "0 3 * * *", suspend: bool = False, name: str = NAME
) -> list[Manifest]:
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True, exist_ok=True)
    (tree / "src" / "train.py").write_text("print('train')\n")
    schedule = SCHEDULE.format(cron=cron) if cron else ""
    text = PIPELINE.format(name=name, suspend=str(suspend).lower(), schedule=schedule)
    (tree / f"{name}.yaml").write_text(text)
    return [m for m in load_tree([tree], root=tree).manifests if m.kind == "Pipeline"]


def _scheduled(azure_env: AzureEnv, tmp_path: Path) -> TreeReconciler:
    """Our reconciler, after it created the pipeline with its schedule."""
    reconciler = _reconciler(azure_env)
    _reconcile(reconciler, _manifests(tmp_path))
    return reconciler


def _reconcile(reconciler: TreeReconciler, manifests: list[Manifest]) -> ObjectReport:
    return report(reconciler.reconcile(manifests), "Pipeline", NAME)


def _properties(azure_env: AzureEnv) -> dict[str, Any]:
    body = azure_env.fake.schedules.schedule(NAME)
    assert body is not None, "no schedule in Azure ML"
    props: dict[str, Any] = body["properties"]
    return props


def _writes(azure_env: AzureEnv) -> list[str]:
    ops = azure_env.fake.log.by_operation()
    return [op for op in ops if op.startswith("Schedules_") and not op.endswith(("_Get", "_List"))]


def test_a_schedule_is_created_with_the_cron_time_zone_and_job_then_nothing_is_written(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path)

    first = _reconcile(reconciler, manifests)
    assert first.outcome.phase is Phase.READY, first.outcome
    props = _properties(azure_env)
    trigger = props["trigger"]
    assert (trigger["triggerType"], trigger["expression"], trigger["timeZone"]) == (
        "Cron",
        "0 3 * * *",
        PARIS,
    )
    assert props["isEnabled"] is True
    tags = props["tags"]
    assert tags[TAG_OWNER] == OWNER
    assert tags[TAG_PIPELINE] == NAME
    job = props["action"]["jobDefinition"]
    assert job["jobType"] == "Pipeline"
    assert set(job["jobs"]) == {"train"}
    # runs the schedule fires carry the same tags as the ones amlops submits
    assert job["tags"][TAG_PIPELINE] == NAME
    assert job["tags"][TAG_TRIGGER] == "schedule"
    assert job["tags"][TAG_OWNER] == OWNER
    assert job["properties"][TAG_PIPELINE] == NAME  # how a run it fires is found

    # the next run: 03:00 in Paris, in UTC in status
    status = reconciler.store.get_object("Pipeline", "dev", NAME)
    assert status is not None
    want = next_fire("0 3 * * *", "Europe/Paris", datetime.now(UTC))
    assert status["status"]["nextScheduleTime"] == want.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert first.outcome.reason == "NoRunYet"
    assert status["status"]["nextScheduleTime"] in first.outcome.message

    azure_env.fake.log.reset()
    again = _reconcile(reconciler, manifests)
    assert again.outcome.phase is Phase.READY
    assert _writes(azure_env) == []
    assert azure_env.fake.log.count("CodeVersions_CreateOrUpdate") == 0


def test_changing_the_cron_updates_the_schedule_and_drift_is_put_back(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _scheduled(azure_env, tmp_path)

    changed = _reconcile(reconciler, _manifests(tmp_path, cron="30 4 * * 1"))
    assert changed.outcome.phase is Phase.READY, changed.outcome
    assert _properties(azure_env)["trigger"]["expression"] == "30 4 * * 1"

    # disabled and moved in the portal: amlops puts both back
    azure_env.fake.schedules.change(
        NAME,
        isEnabled=False,
        trigger={"triggerType": "Cron", "expression": "0 0 * * *", "timeZone": "UTC"},
    )
    fixed = _reconcile(reconciler, _manifests(tmp_path, cron="30 4 * * 1"))
    assert fixed.outcome.phase is Phase.READY, fixed.outcome
    props = _properties(azure_env)
    assert props["isEnabled"] is True
    assert (props["trigger"]["expression"], props["trigger"]["timeZone"]) == ("30 4 * * 1", PARIS)


def test_suspend_disables_the_schedule_and_resuming_enables_it(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _scheduled(azure_env, tmp_path)

    suspended = _reconcile(reconciler, _manifests(tmp_path, suspend=True))
    assert suspended.outcome.phase is Phase.SUSPENDED
    assert _properties(azure_env)["isEnabled"] is False

    azure_env.fake.log.reset()
    _reconcile(reconciler, _manifests(tmp_path, suspend=True))
    assert _writes(azure_env) == []  # disabled already

    resumed = _reconcile(reconciler, _manifests(tmp_path))
    assert resumed.outcome.phase is Phase.READY, resumed.outcome
    assert _properties(azure_env)["isEnabled"] is True


def test_the_schedule_goes_with_spec_schedule_and_with_the_object(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _scheduled(azure_env, tmp_path)

    unscheduled = _reconcile(reconciler, _manifests(tmp_path, cron=None))
    assert unscheduled.outcome.phase is Phase.READY, unscheduled.outcome
    assert azure_env.fake.schedules.schedule(NAME) is None

    _reconcile(reconciler, _manifests(tmp_path))
    assert azure_env.fake.schedules.schedule(NAME) is not None
    reconciler.reconcile([])  # the manifest is gone
    assert azure_env.fake.schedules.schedule(NAME) is None
    ops = azure_env.fake.log.by_operation()
    assert ops.get("Schedules_Delete") == 2, ops


def test_a_schedule_of_another_owner_is_left_alone(azure_env: AzureEnv, tmp_path: Path) -> None:
    theirs = _reconciler(azure_env, owner="someone-else")
    _reconcile(theirs, _manifests(tmp_path))
    before = _properties(azure_env)

    ours = _reconciler(azure_env)
    azure_env.fake.log.reset()
    stalled = _reconcile(ours, _manifests(tmp_path, cron="30 4 * * 1"))
    assert (stalled.outcome.phase, stalled.outcome.reason) == (Phase.STALLED, "BackendRefused")
    assert "someone-else" in stalled.outcome.message
    assert _writes(azure_env) == []
    ours.reconcile([])  # our object goes; their schedule stays
    after = _properties(azure_env)
    assert after["trigger"] == before["trigger"] and after["isEnabled"] is True
    assert after["tags"][TAG_OWNER] == "someone-else"


def test_the_schedules_of_a_workspace_are_read_from_one_list_disabled_ones_included(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _reconciler(azure_env, snapshot_ttl_s=0.5)
    _manifests(tmp_path, name="nightly")
    reconciler.reconcile(_manifests(tmp_path))
    _manifests(tmp_path, name="nightly", suspend=True)
    both = _manifests(tmp_path)
    assert sorted(m.name for m in both) == ["nightly", NAME]
    reconciler.reconcile(both)
    nightly = azure_env.fake.schedules.schedule("nightly")
    assert nightly is not None and nightly["properties"]["isEnabled"] is False

    time.sleep(0.6)  # the lists taken before the writes are stale now
    azure_env.fake.log.reset()
    reports = reconciler.reconcile(both)
    assert {r.name: r.outcome.phase for r in reports} == {
        NAME: Phase.READY,
        "nightly": Phase.SUSPENDED,
    }
    ops = azure_env.fake.log.by_operation()
    assert ops.get("Schedules_List") == 1, ops
    assert "Schedules_Get" not in ops, ops
    assert _writes(azure_env) == []


def test_a_list_of_schedules_over_several_pages_is_read_to_its_end(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    reconciler = _reconciler(azure_env, snapshot_ttl_s=0.5)
    _manifests(tmp_path, name="nightly")
    both = _manifests(tmp_path)
    reconciler.reconcile(both)
    time.sleep(0.6)  # the lists taken before the writes are stale now
    azure_env.fake.page_size = 1  # each schedule on a page of its own
    azure_env.fake.log.reset()
    reports = reconciler.reconcile(both)
    assert {r.name: r.outcome.phase for r in reports} == {NAME: Phase.READY, "nightly": Phase.READY}
    ops = azure_env.fake.log.by_operation()
    assert ops.get("Schedules_List") == 2, ops  # the first page and its nextLink
    assert "Schedules_Get" not in ops, ops  # the second page answered for its schedule
    assert _writes(azure_env) == []


def test_a_job_naming_files_outside_the_source_root_is_not_scheduled(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    backend = make_backend(azure_env, source_root=root)
    job = {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "jobs": {"train": {"type": "command", "code": str(outside), "command": "python t.py"}},
    }
    spec = PipelineScheduleSpec("dev", NAME, "0 3 * * *", "Europe/Paris", True, job, "sha256:x")
    with pytest.raises(BackendError, match=str(outside)):
        backend.create_or_update_pipeline_schedule(spec)
    ops = azure_env.fake.log.by_operation()
    assert "CodeVersions_CreateOrUpdate" not in ops and _writes(azure_env) == [], ops


def test_pipelines_without_a_schedule_and_their_computes_cost_one_list_each_per_cycle(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    """A drift cycle's absent schedule is answered by the workspace's list, not a 404 each,
    and the clusters every pipeline checks come from one list too."""
    reconciler = _reconciler(azure_env, snapshot_ttl_s=0.5)
    _manifests(tmp_path, cron=None, name="weekly")
    both = _manifests(tmp_path, cron=None)
    assert sorted(m.name for m in both) == [NAME, "weekly"]
    reconciler.reconcile(both)
    assert azure_env.fake.schedules.schedule(NAME) is None

    time.sleep(0.6)  # the lists of the first pass are stale now
    azure_env.fake.log.reset()
    reconciler.reconcile(both)
    ops = azure_env.fake.log.by_operation()
    assert ops.get("Schedules_List") == 1 and "Schedules_Get" not in ops, ops
    assert ops.get("Compute_List") == 1 and "Compute_Get" not in ops, ops
    assert _writes(azure_env) == []
