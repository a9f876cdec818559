"""A pipeline's schedule on a backend that fires schedules itself (Azure ML): the reconciler keeps
one there (create, correct drift, disable while suspended, delete) and never submits a
``schedule`` run; on a backend that does not (local) it stays the timer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from amlops.backends.base import (
    Backend,
    BackendError,
    ComputeInfo,
    JobStatus,
    ModelVersion,
    PipelineRun,
    PipelineScheduleSpec,
    PipelineScheduleState,
    ProvisioningState,
)
from amlops.backends.local.backend import LocalBackend
from amlops.core.provenance import TAG_PIPELINE, TAG_TRIGGER
from amlops.core.source import FieldPath, Position
from amlops.reconcile import pipeline
from amlops.reconcile.conditions import Phase
from amlops.reconcile.inputs import Gone, Inputs, Source
from amlops.reconcile.pipeline import (
    CancelPipelineRun,
    CreateOrUpdateSchedule,
    DeleteSchedule,
    DisableSchedule,
    SubmitPipelineRun,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
PARIS = {"cron": "0 3 * * *", "timeZone": "Europe/Paris"}


class _Line7:
    def locate(self, path: FieldPath, /) -> Position:
        return Position("m.yaml", 7, 1)


SOURCE = Source(_Line7(), lambda path, value: Path("/repo") / value)


def _pipeline(source: Source = SOURCE, **spec: Any) -> pipeline.PipelineDesired:
    job = {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "jobs": {"train": {"command": "python t.py", "code": "src"}},
    }
    spec.setdefault("runOnChange", False)
    inputs = Inputs("ws", "p", {"job": job, **spec}, 1, source, {"amlops-commit": "abc"})
    return pipeline.desired(inputs)


def _state(desired: pipeline.PipelineDesired, **changes: Any) -> PipelineScheduleState:
    """The schedule the reconciler asks for, as the backend would report it."""
    kept = PipelineScheduleState(
        workspace="ws",
        pipeline="p",
        cron=desired.cron or "",
        time_zone=desired.time_zone,
        enabled=True,
        fingerprint=pipeline.fingerprint(desired, _observed()),
        provisioning_state=ProvisioningState.SUCCEEDED,
    )
    return replace(kept, **changes)


def _observed(
    schedule: PipelineScheduleState | None = None,
    run: PipelineRun | None = None,
    native: bool = True,
) -> pipeline.PipelineObserved:
    return pipeline.PipelineObserved(
        computes={"cpu": ComputeInfo("ws", "cpu", 1)},
        models={},
        local_digests={"spec.job.jobs.train.code": "sha256:code"},
        latest_run=run,
        native_schedules=native,
        schedule=schedule,
    )


def test_a_missing_schedule_is_created_with_the_job_of_a_change_run() -> None:
    desired = _pipeline(schedule=PARIS)
    result = pipeline.reconcile_pipeline(desired, _observed(), None, NOW)
    assert (result.outcome.phase, result.outcome.reason) == (Phase.RECONCILING, "Scheduling")
    [action] = result.actions
    assert isinstance(action, CreateOrUpdateSchedule)
    spec = action.spec
    assert (spec.cron, spec.time_zone, spec.enabled) == ("0 3 * * *", "Europe/Paris", True)
    assert spec.job["jobs"]["train"]["code"] == "/repo/src"
    assert spec.fingerprint == pipeline.fingerprint(desired, _observed())
    assert spec.tags[TAG_PIPELINE] == "p"
    assert spec.tags[TAG_TRIGGER] == "schedule"
    assert spec.tags["amlops-commit"] == "abc"


def test_a_kept_schedule_is_left_alone_and_its_next_time_reported() -> None:
    desired = _pipeline(schedule=PARIS)
    result = pipeline.reconcile_pipeline(desired, _observed(_state(desired)), None, NOW)
    assert result.actions == ()
    assert (result.outcome.phase, result.outcome.reason) == (Phase.READY, "NoRunYet")
    assert result.status["nextScheduleTime"] == "2026-03-03T02:00:00Z"  # 03:00 CET
    assert "2026-03-03T02:00:00Z" in result.outcome.message


def test_a_due_time_submits_no_schedule_run_when_the_backend_fires_it() -> None:
    desired = _pipeline(schedule=PARIS)
    done = PipelineRun(
        "r1", "ws", "p", pipeline.fingerprint(desired, _observed()), "change",
        JobStatus.COMPLETED, (), "t",
    )  # fmt: skip
    first = pipeline.reconcile_pipeline(desired, _observed(_state(desired), done), None, NOW)
    later = NOW + timedelta(days=2)
    result = pipeline.reconcile_pipeline(
        desired, _observed(_state(desired), done), first.status, later
    )
    assert result.actions == ()
    assert result.outcome.reason == "Succeeded"
    # the same object on a backend without native schedules: the timer fires
    local = pipeline.reconcile_pipeline(desired, _observed(None, done, native=False), None, NOW)
    fired = pipeline.reconcile_pipeline(
        desired, _observed(None, done, native=False), local.status, later
    )
    assert [type(a) for a in fired.actions] == [SubmitPipelineRun]
    assert fired.actions[0].spec.trigger == "schedule"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "drift",
    [
        {"enabled": False},
        {"cron": "0 0 * * *"},
        {"time_zone": "UTC"},
        {"fingerprint": "sha256:old"},
    ],
    ids=["disabled", "cron", "time-zone", "job"],
)
def test_a_drifted_or_changed_schedule_is_corrected(drift: dict[str, Any]) -> None:
    desired = _pipeline(schedule=PARIS)
    result = pipeline.reconcile_pipeline(desired, _observed(_state(desired, **drift)), None, NOW)
    [action] = result.actions
    assert isinstance(action, CreateOrUpdateSchedule)
    assert (action.spec.cron, action.spec.time_zone, action.spec.enabled) == (
        "0 3 * * *",
        "Europe/Paris",
        True,
    )


def test_suspend_disables_an_enabled_schedule_once() -> None:
    desired = _pipeline(schedule=PARIS, suspend=True)
    result = pipeline.reconcile_pipeline(desired, _observed(_state(desired)), None, NOW)
    assert result.outcome.phase is Phase.SUSPENDED
    assert result.actions == (DisableSchedule("ws", "p"),)
    disabled = _observed(_state(desired, enabled=False))
    assert pipeline.reconcile_pipeline(desired, disabled, None, NOW).actions == ()
    resumed = _pipeline(schedule=PARIS)
    again = pipeline.reconcile_pipeline(resumed, disabled, None, NOW)
    [action] = again.actions
    assert isinstance(action, CreateOrUpdateSchedule) and action.spec.enabled


def test_a_schedule_removed_from_the_spec_is_deleted() -> None:
    scheduled = _pipeline(schedule=PARIS)
    unscheduled = _pipeline()
    result = pipeline.reconcile_pipeline(unscheduled, _observed(_state(scheduled)), None, NOW)
    assert result.actions == (DeleteSchedule("ws", "p"),)
    kept = pipeline.reconcile_pipeline(scheduled, _observed(_state(scheduled)), None, NOW)
    assert "nextScheduleTime" in kept.status
    gone = pipeline.reconcile_pipeline(unscheduled, _observed(), kept.status, NOW)
    assert gone.actions == ()
    assert "nextScheduleTime" not in gone.status and "schedule" not in gone.status


def test_a_bad_schedule_stalls_without_touching_the_backend() -> None:
    desired = _pipeline(schedule={"cron": "0 3 * * *", "timeZone": "Mars/Olympus"})
    result = pipeline.reconcile_pipeline(desired, _observed(), None, NOW)
    assert (result.outcome.phase, result.outcome.reason) == (Phase.STALLED, "InvalidSpec")
    assert "m.yaml:7 spec.schedule" in result.outcome.message
    assert result.actions == ()


# -- through the driver, with a backend that keeps schedules in memory ------------------------


@dataclass
class _Schedules:
    """The schedule calls of a Backend that fires schedules itself; nothing else is asked."""

    native_schedules: bool = True
    kept: dict[tuple[str, str], PipelineScheduleState] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    run: PipelineRun | None = None

    def get_compute(self, workspace: str, name: str) -> ComputeInfo | None:
        return ComputeInfo(workspace, name, 1)

    def get_model_version(self, workspace: str, name: str, version: str) -> ModelVersion | None:
        return None

    def latest_pipeline_run(self, workspace: str, pipeline: str) -> PipelineRun | None:
        return self.run

    def cancel_pipeline_run(self, workspace: str, run_id: str) -> None:
        self.calls.append(f"cancel {run_id}")

    def get_pipeline_schedule(self, workspace: str, pipeline: str) -> PipelineScheduleState | None:
        return self.kept.get((workspace, pipeline))

    def create_or_update_pipeline_schedule(
        self, spec: PipelineScheduleSpec
    ) -> PipelineScheduleState:
        self.calls.append(f"put {spec.cron} enabled={spec.enabled}")
        state = PipelineScheduleState.accepted(spec, ProvisioningState.SUCCEEDED, tags={})
        self.kept[(spec.workspace, spec.pipeline)] = state
        return state

    def disable_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        self.calls.append("disable")
        key = (workspace, pipeline)
        self.kept[key] = replace(self.kept[key], enabled=False)

    def delete_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        self.calls.append("delete")
        self.kept.pop((workspace, pipeline), None)


def test_the_driver_creates_the_schedule_once_and_then_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.py").write_text("print('train')\n")
    desired = _pipeline(Source(_Line7(), lambda path, value: tmp_path / value), schedule=PARIS)
    fake = _Schedules()
    backend = cast(Backend, fake)
    first = pipeline.RECONCILER.reconcile(backend, desired, None, NOW)
    assert fake.calls == ["put 0 3 * * * enabled=True"]
    assert [type(a) for a in first.actions] == [CreateOrUpdateSchedule]
    # observed again in the same call: the schedule is there, as asked
    assert (first.outcome.phase, first.outcome.reason) == (Phase.READY, "NoRunYet")
    again = pipeline.RECONCILER.reconcile(backend, desired, first.status, NOW)
    assert again.actions == ()
    assert fake.calls == ["put 0 3 * * * enabled=True"]
    assert again.status == first.status  # nothing to write either


def test_finalize_deletes_the_schedule_then_stops_the_run() -> None:
    fake = _Schedules(
        run=PipelineRun("r9", "ws", "p", "sha256:x", "schedule", JobStatus.RUNNING, (), "t")
    )
    gone = Gone("ws", "p", {}, "Retain")
    actions = pipeline.finalize(cast(Backend, fake), gone)
    assert actions == (DeleteSchedule("ws", "p"), CancelPipelineRun("ws", "r9"))
    without = _Schedules(native_schedules=False)
    assert pipeline.finalize(cast(Backend, without), gone) == ()


def test_the_local_backend_keeps_no_schedules(tmp_path: Path) -> None:
    with LocalBackend(tmp_path / "state") as local:
        assert local.native_schedules is False
        assert local.get_pipeline_schedule("ws", "p") is None
        local.delete_pipeline_schedule("ws", "p")
        spec = PipelineScheduleSpec("ws", "p", "0 3 * * *", "UTC", True, {}, "sha256:x")
        with pytest.raises(BackendError, match="keeps no schedules"):
            local.create_or_update_pipeline_schedule(spec)
