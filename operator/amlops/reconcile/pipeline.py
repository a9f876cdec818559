"""Pipeline: run the Azure ML pipeline job when its spec changes, on its schedule, or on request.

A run is identified by the job's fingerprint: the job as written plus the digests of the local
files it points at (code folders, input data), so editing a training script or the data is a
change too. Triggers, in order: a new request (a driver's: a CLI command, an annotation), a
changed fingerprint (``runOnChange``, default on), an interrupted run of the current fingerprint
(its runner died), a due ``schedule``. Only one run at a time: a trigger that comes while a run is
active waits for it. A run starts only when every compute and every input model exists
(DependencyNotReady until then). A failed run stalls the object until the spec changes or a
run is requested.

Who fires the schedule depends on the backend (``Backend.native_schedules``). Without native
schedules (local) the reconciler is the timer: it keeps the next time in status and submits a
``schedule`` run when it is due. With them (Azure ML schedules) the backend fires it: the
reconciler keeps one schedule per pipeline there, with the same job, fingerprint and tags as a
change-triggered run (trigger ``schedule``), created or corrected when its cron, time zone, job
or enabled flag differ (drift included), disabled while ``suspend`` is true, deleted when
``spec.schedule`` goes or the object does; it submits no ``schedule`` run itself. The schedule
only says when: Azure ML resolves computes and models when it fires, so keeping it does not wait
for them. While the spec cannot run (invalid, files missing) the schedule is left as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from amlops.backends.base import (
    Backend,
    ComputeInfo,
    JobStatus,
    ModelVersion,
    PipelineRun,
    PipelineRunSpec,
    PipelineScheduleSpec,
    PipelineScheduleState,
)
from amlops.core.files import PathRefusedError
from amlops.core.findings import Finding
from amlops.core.provenance import TAG_PIPELINE, TAG_TRIGGER
from amlops.core.source import Document, FieldPath
from amlops.kinds.component import ComponentFileError, LoadComponent, NameComponent, Named
from amlops.kinds.component import read_file as read_component_file
from amlops.kinds.pipeline import JOB, JobGraph, PipelineSpec, parse
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import (
    Outcome,
    Phase,
    build_status,
    parse_timestamp,
    suspended,
    timestamp,
)
from amlops.reconcile.inputs import Gone, Inputs, Source, accepted, describe, digest_of
from amlops.reconcile.observe import digest_or_none, model_version

RUNNING_REQUEUE_S = 1.0


@dataclass(frozen=True)
class PipelineDesired:
    workspace: str
    name: str
    generation: int
    job: Mapping[str, Any]  # local paths resolved to absolute ones
    job_as_written: Mapping[str, Any]
    graph: JobGraph | None  # the job parsed once; None: it cannot run (see problems)
    problems: tuple[str, ...]  # why the job cannot run as written, naming fields
    local_paths: Mapping[str, Path]  # "spec.job.jobs.prep.code" -> folder, to digest
    source: Source
    cron: str | None = None
    time_zone: str = "UTC"
    run_on_change: bool = True
    suspend: bool = False
    requested_at: str | None = None  # when a run was last requested (the drivers say how)
    # added to every run's tags (and to the models it registers): the Git commit and manifest
    # (amlops.core.provenance); not part of the fingerprint, so a new commit alone is no change
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineObserved:
    computes: Mapping[str, ComputeInfo | None]
    models: Mapping[str, ModelVersion | None]  # model input name -> registered version
    local_digests: Mapping[str, str | None]  # same keys as local_paths; None: missing
    latest_run: PipelineRun | None = None
    native_schedules: bool = False  # the backend fires schedules itself (see the docstring)
    schedule: PipelineScheduleState | None = None  # the backend's, when native


@dataclass(frozen=True)
class SubmitPipelineRun:
    spec: PipelineRunSpec

    def describe(self) -> str:
        return f"start a run of {self.spec.pipeline} ({self.spec.trigger})"

    def execute(self, backend: Backend) -> None:
        backend.submit_pipeline_run(self.spec)


@dataclass(frozen=True)
class CancelPipelineRun:
    workspace: str
    run_id: str

    def describe(self) -> str:
        return f"cancel run {self.run_id}"

    def execute(self, backend: Backend) -> None:
        backend.cancel_pipeline_run(self.workspace, self.run_id)


@dataclass(frozen=True)
class CreateOrUpdateSchedule:
    spec: PipelineScheduleSpec

    def describe(self) -> str:
        s = self.spec
        return f"schedule {s.pipeline} at {s.cron!r} ({s.time_zone})"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_pipeline_schedule(self.spec)


@dataclass(frozen=True)
class DisableSchedule:
    workspace: str
    pipeline: str

    def describe(self) -> str:
        return f"disable the schedule of {self.pipeline}"

    def execute(self, backend: Backend) -> None:
        backend.disable_pipeline_schedule(self.workspace, self.pipeline)


@dataclass(frozen=True)
class DeleteSchedule:
    workspace: str
    pipeline: str

    def describe(self) -> str:
        return f"delete the schedule of {self.pipeline}"

    def execute(self, backend: Backend) -> None:
        backend.delete_pipeline_schedule(self.workspace, self.pipeline)


def _put(job: dict[str, Any], where: FieldPath, value: str) -> None:
    *parents, key = where
    container: Any = job
    for part in parents:
        container = container[part]
    container[key] = value


def desired_pipeline(
    inputs: Inputs, pipeline: PipelineSpec, findings: Sequence[Finding] = ()
) -> PipelineDesired:
    """``findings``: why the job cannot run as written (``amlops.kinds.pipeline.parse``)."""
    job = copy.deepcopy(dict(pipeline.job))
    local: dict[str, Path] = {}
    for where, value in pipeline.local_files:
        path = inputs.source.resolve((*JOB, *where), value)
        _put(job, where, str(path))
        local[".".join(map(str, (*JOB, *where)))] = path
    return PipelineDesired(
        workspace=inputs.workspace,
        name=inputs.name,
        generation=inputs.generation,
        job=job,
        job_as_written=pipeline.job,
        graph=pipeline.graph,
        problems=tuple(describe(f) for f in findings),
        local_paths=local,
        source=inputs.source,
        cron=pipeline.cron,
        time_zone=pipeline.time_zone,
        run_on_change=pipeline.run_on_change,
        suspend=pipeline.lifecycle.suspend,
        requested_at=inputs.requested_at,
        tags=inputs.tags,
    )


def desired(inputs: Inputs) -> PipelineDesired:
    """The spec parsed once (``amlops.kinds.pipeline``), with the component files its job
    names put in place, and the repository's Components its ``azureml:`` steps name when the
    driver has the repository; SpecError when it cannot be read."""
    source = inputs.source
    pipeline, findings = parse(
        inputs.spec, source.locator, component_files(source), named_components(source)
    )
    return desired_pipeline(inputs, accepted((pipeline, findings)), findings)


def named_components(source: Source) -> NameComponent | None:
    """The Components of the repository the job's ``azureml:`` steps name, when the driver
    has the repository (``amlops up``): they run as component files do. Without it (the
    operator) such a step keeps its reference, and the local backend refuses to run it."""
    lookup = source.components
    if lookup is None:
        return None

    def named(value: str) -> Named | None:
        return lookup(JOB, value)

    return named


def component_files(source: Source) -> LoadComponent:
    """Component files named in a job, read through the source's containment rule."""

    def load(named: str) -> Document:
        try:
            path = source.resolve(JOB, named)
        except PathRefusedError as exc:
            raise ComponentFileError(exc.rule, str(exc)) from exc
        return read_component_file(path, None)

    return load


def observe(backend: Backend, desired: PipelineDesired) -> PipelineObserved:
    # A job that cannot run needs nothing observed: the reconciler stalls on it first.
    graph = desired.graph
    native = backend.native_schedules
    return PipelineObserved(
        computes={
            name: backend.get_compute(desired.workspace, name)
            for name in sorted(graph.computes if graph else ())
        },
        models={
            name: model_version(backend, desired.workspace, ref)
            for name, ref in (graph.model_inputs if graph else {}).items()
        },
        local_digests={label: digest_or_none(path) for label, path in desired.local_paths.items()},
        latest_run=backend.latest_pipeline_run(desired.workspace, desired.name),
        native_schedules=native,
        schedule=backend.get_pipeline_schedule(desired.workspace, desired.name) if native else None,
    )


def fingerprint(desired: PipelineDesired, observed: PipelineObserved) -> str:
    return digest_of({"job": desired.job_as_written, "files": dict(observed.local_digests)})


def next_fire(cron: str, time_zone: str, after: datetime) -> datetime:
    """The first time after ``after`` that ``cron`` fires, read in ``time_zone``."""
    local = after.astimezone(ZoneInfo(time_zone))
    fire: datetime = croniter(cron, local).get_next(datetime)
    return fire


def _progress(run: PipelineRun) -> str:
    done = sum(1 for s in run.steps if s.status is JobStatus.COMPLETED)
    active = [f"{s.name} {s.status}" for s in run.steps if s.status in _ACTIVE]
    where = f": {', '.join(active)}" if active else ""
    return f"run {run.run_id} {run.status} ({done}/{len(run.steps)} steps done){where}"


_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _run_fields(run: PipelineRun | None) -> dict[str, Any]:
    if run is None:
        return {}
    steps: dict[str, Any] = {}
    for step in run.steps:
        entry: dict[str, Any] = {"state": str(step.status)}
        if step.exit_code is not None:
            entry["exitCode"] = step.exit_code
        steps[step.name] = entry
    return {
        "runId": run.run_id,
        "phase": str(run.status),
        "steps": steps,
        "outputs": dict(run.outputs) or None,
    }


def reconcile_pipeline(
    desired: PipelineDesired,
    observed: PipelineObserved,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    prev = previous or {}
    run = observed.latest_run
    fields: dict[str, Any] = {
        **_run_fields(run),
        "lastScheduleTime": prev.get("lastScheduleTime"),
        "nextScheduleTime": prev.get("nextScheduleTime"),
        "lastHandledRequest": prev.get("lastHandledRequest"),
    }

    def result(outcome: Outcome, *actions: Action, requeue: float | None = None) -> Result:
        status = build_status(outcome, desired.generation, previous, now, **fields)
        return Result(tuple(actions), status, outcome, requeue)

    def stalled(reason: str, message: str) -> Result:
        return result(Outcome(Phase.STALLED, reason, message))

    if desired.suspend:
        schedule = observed.schedule
        if observed.native_schedules and schedule is not None and schedule.enabled:
            return result(
                suspended(),
                DisableSchedule(desired.workspace, desired.name),
                requeue=RUNNING_REQUEUE_S,
            )
        return result(suspended())
    if desired.graph is None or desired.problems:
        return stalled("InvalidSpec", "; ".join(desired.problems))
    for label, digest in observed.local_digests.items():
        if digest is None:
            return stalled(
                "ArtifactsNotFound",
                f"{label}: {desired.local_paths[label]} does not exist; fix the path",
            )
    current = fingerprint(desired, observed)
    fields["specHash"] = current.removeprefix("sha256:")[:16]

    # the schedule: when the next run is due (kept in status, so it survives restarts); with
    # native schedules the backend fires it and the time is only reported
    due = False
    if desired.cron:
        try:
            if observed.native_schedules:
                # Azure ML's schedules do not report their next firing: computed, as locally
                fields["nextScheduleTime"] = timestamp(
                    next_fire(desired.cron, desired.time_zone, now)
                )
            else:
                next_time = parse_timestamp(prev.get("nextScheduleTime"))
                if next_time is None or prev.get("schedule") != desired.cron:
                    next_time = next_fire(desired.cron, desired.time_zone, now)
                    fields["nextScheduleTime"] = timestamp(next_time)
                due = now >= next_time
        except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
            return stalled(
                "InvalidSpec",
                f"{desired.source.field(('spec', 'schedule'))}: {exc}; write a five-field "
                "cron expression and an IANA time zone such as UTC or Europe/Berlin",
            )
        fields["schedule"] = desired.cron
    elif observed.native_schedules:  # no schedule to report once the backend's is deleted
        fields["schedule"] = fields["nextScheduleTime"] = None
    if observed.native_schedules:
        change = _schedule_change(desired, observed.schedule, current)
        if change is not None:
            return result(
                Outcome(Phase.RECONCILING, "Scheduling", change.describe()),
                change,
                requeue=RUNNING_REQUEUE_S,
            )

    if run is not None and run.status in (JobStatus.NOT_STARTED, *_ACTIVE):
        return result(
            Outcome(Phase.RECONCILING, "Running", _progress(run)), requeue=RUNNING_REQUEUE_S
        )

    trigger = None
    requested = desired.requested_at
    if requested and requested != prev.get("lastHandledRequest"):
        trigger = "manual"
    elif desired.run_on_change and (run is None or run.fingerprint != current):
        trigger = "change"
    elif run is not None and run.fingerprint == current and run.interrupted:
        trigger = "retry"
    elif due:
        trigger = "schedule"

    if trigger is not None:
        waiting = _missing_dependencies(desired.workspace, desired.graph, observed)
        if waiting:
            return result(
                Outcome(
                    Phase.RECONCILING, "DependencyNotReady", "waiting for " + "; ".join(waiting)
                ),
                requeue=RUNNING_REQUEUE_S,
            )
        if trigger == "manual":
            fields["lastHandledRequest"] = requested
        if trigger == "schedule":
            fields["lastScheduleTime"] = timestamp(now)
            fields["nextScheduleTime"] = timestamp(
                next_fire(desired.cron or "", desired.time_zone, now)
            )
        spec = PipelineRunSpec(
            workspace=desired.workspace,
            pipeline=desired.name,
            job=desired.job,
            fingerprint=current,
            trigger=trigger,
            tags=_run_tags(desired, trigger),
        )
        return result(
            Outcome(Phase.RECONCILING, "Starting", f"starting a run ({trigger})"),
            SubmitPipelineRun(spec),
            requeue=RUNNING_REQUEUE_S,
        )

    if run is None:
        # How to request a run belongs to the driver (a CLI command, an annotation), not here.
        hint = (
            f"next scheduled run at {fields['nextScheduleTime']}"
            if desired.cron
            else "request a run to start one"
        )
        return result(Outcome(Phase.READY, "NoRunYet", f"no run yet (runOnChange is off); {hint}"))
    if run.status is JobStatus.COMPLETED:
        registered = ", ".join(f"{v} (output {k})" for k, v in sorted(run.outputs.items()))
        note = f"; registered {registered}" if registered else ""
        return result(Outcome(Phase.READY, "Succeeded", f"run {run.run_id} completed{note}"))
    what = "failed" if run.status is JobStatus.FAILED else "was canceled"
    return stalled(
        "RunFailed" if run.status is JobStatus.FAILED else "RunCanceled",
        f"run {run.run_id} {what}: {run.message or 'no message'}; fix the cause and change "
        "the spec, or request a run again",
    )


def _run_tags(desired: PipelineDesired, trigger: str) -> dict[str, str]:
    """A run's tags, also the job's of a backend's schedule (trigger ``schedule``)."""
    return {**desired.tags, TAG_PIPELINE: desired.name, TAG_TRIGGER: trigger}


def _schedule_change(
    desired: PipelineDesired, schedule: PipelineScheduleState | None, fingerprint: str
) -> CreateOrUpdateSchedule | DeleteSchedule | None:
    """What keeps the backend's schedule as the spec says: the same job as a change-triggered
    run (fingerprint and tags, trigger ``schedule``), enabled; none without ``spec.schedule``."""
    if not desired.cron:
        return DeleteSchedule(desired.workspace, desired.name) if schedule is not None else None
    want = PipelineScheduleSpec(
        workspace=desired.workspace,
        pipeline=desired.name,
        cron=desired.cron,
        time_zone=desired.time_zone,
        enabled=True,
        job=desired.job,
        fingerprint=fingerprint,
        tags=_run_tags(desired, "schedule"),
    )
    if schedule is not None and (
        schedule.cron,
        schedule.time_zone,
        schedule.enabled,
        schedule.fingerprint,
    ) == (want.cron, want.time_zone, want.enabled, want.fingerprint):
        return None
    return CreateOrUpdateSchedule(want)


def _missing_dependencies(workspace: str, graph: JobGraph, observed: PipelineObserved) -> list[str]:
    waiting = [
        f"ComputeCluster {name} in workspace {workspace}"
        for name in sorted(graph.computes)
        if observed.computes.get(name) is None
    ]
    for input_name, ref in sorted(graph.model_inputs.items()):
        if observed.models.get(input_name) is None:
            waiting.append(f"model {ref} (input {input_name})")
    return waiting


def finalize(backend: Backend, gone: Gone) -> tuple[Action, ...]:
    """The object is gone: delete its schedule (a backend's, whatever ``deletionPolicy`` says:
    like a run, it is the object's activity, not an asset), then stop its active run. Finished
    runs are history and stay."""
    actions: list[Action] = []
    if backend.native_schedules:
        actions.append(DeleteSchedule(gone.workspace, gone.name))
    run = backend.latest_pipeline_run(gone.workspace, gone.name)
    if run is not None and not run.status.terminal:
        actions.append(CancelPipelineRun(gone.workspace, run.run_id))
    return tuple(actions)


RECONCILER = driver.Reconciler("Pipeline", desired, observe, reconcile_pipeline, finalize)
