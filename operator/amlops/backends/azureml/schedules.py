"""Pipeline schedules as Azure ML schedules (``ml_client.schedules``, a ``JobSchedule`` with a
``CronTrigger``), for the backend's ``*_pipeline_schedule`` calls.

One schedule per Pipeline, named after it (``schedule_name``), whose job is the pipeline job a
change-triggered run submits (``pipelines``: files checked against the source root, the run's
tags with trigger ``schedule``, the job properties a run is found and its models registered
by), so the runs it fires are observed like the others. Tags on the schedule, besides the
spec's:

* ``amlops-owner``: as on every asset; a schedule of another owner (or none), or made for
  another pipeline (``amlops-pipeline``), is never changed, disabled or deleted
  (``OwnershipError``), and reading it says so.
* ``amlops-fingerprint``: the reconciler's fingerprint of the job, compared to tell a changed
  job (Azure returns the job resolved to asset ids, not as written).
* ``amlops-time-zone``: the IANA time zone asked for. Azure ML takes Windows time zone names
  (``Romance Standard Time`` for ``Europe/Paris``; tzlocal's CLDR table): the state reports the
  IANA name while Azure still holds its Windows name, else Azure's, so a change made in Azure is
  drift.

Reads go through the workspace's list of schedules (all of them, disabled included) while it
is fresh (``snapshots``, scope ``(workspace, "schedule", "")``); a read right before a write, and
the first after one, is a GET. Azure ML deletes only disabled schedules: ``delete`` disables an
enabled one first and waits for that. The SDK resolves the job before it sends the schedule:
it uploads code folders and registers the anonymous components of inline steps, as for a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tzlocal.windows_tz import tz_win

from amlops.backends import base
from amlops.backends.azureml import backend as azureml
from amlops.backends.azureml import pipelines
from amlops.backends.azureml.calls import OwnershipError
from amlops.backends.azureml.snapshots import Scope
from amlops.core.provenance import TAG_PIPELINE

if TYPE_CHECKING:
    from amlops.backends.azureml.backend import AzureMLBackend

TAG_TIME_ZONE = "amlops-time-zone"
_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 255  # Azure ML's schedule names: ^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$


def schedule_name(pipeline: str) -> str:
    """The Azure ML schedule of a pipeline: its name, with what Azure refuses (a Kubernetes
    name's dots) as dashes."""
    name = _NOT_A_NAME.sub("-", pipeline)[:_MAX_NAME]
    if not name or not name[0].isalnum():
        raise base.BackendError(
            f"pipeline {pipeline!r}: an Azure ML schedule name starts with a letter or digit"
        )
    return name


def windows_time_zone(time_zone: str) -> str:
    """The Windows name Azure ML schedules take for an IANA time zone."""
    found = tz_win.get(time_zone)
    if found is None:
        raise base.BackendError(
            f"time zone {time_zone!r}: Azure ML schedules take Windows time zone names and "
            "this one has none; write an IANA name of a region, such as UTC or Europe/Berlin"
        )
    return found


def _scope(workspace: str) -> Scope:
    return (workspace, "schedule", "")


def _state(workspace: str, pipeline: str, found: Any) -> base.PipelineScheduleState:
    tags = {str(k): str(v) for k, v in (found.tags or {}).items()}
    trigger = found.trigger
    # a RecurrenceTrigger set in Azure has no cron: "" differs from every spec, so it is replaced
    cron = str(getattr(trigger, "expression", "") or "")
    held = str(getattr(trigger, "time_zone", None) or "UTC")
    asked = tags.get(TAG_TIME_ZONE, "")
    return base.PipelineScheduleState(
        workspace=workspace,
        pipeline=pipeline,
        cron=cron,
        time_zone=asked if asked and tz_win.get(asked) == held else held,
        enabled=bool(found.is_enabled),
        fingerprint=tags.get(azureml.TAG_FINGERPRINT, ""),
        provisioning_state=_provisioning(found.provisioning_state),
        tags=tags,
    )


def _provisioning(value: str | None) -> base.ProvisioningState:
    """As the backend reads a state; a schedule without one was made (it has no LRO state)."""
    return azureml._state(value or "Succeeded")


def _ours(
    backend: AzureMLBackend, workspace: str, name: str, pipeline: str, tags: Mapping[str, str]
) -> None:
    key = ("schedule", workspace, name)
    backend._seen(key, tags)
    backend._check_owner(f"schedule {name}", tags, key)
    made_for = tags.get(TAG_PIPELINE)
    if made_for is not None and made_for != pipeline:
        raise OwnershipError(
            f"schedule {name} exists in Azure ML for pipeline {made_for!r}, not {pipeline!r}: "
            "amlops does not change or delete it. Rename one of the pipelines"
        )


def _read(
    backend: AzureMLBackend, workspace: str, pipeline: str, *, shared: bool
) -> base.PipelineScheduleState | None:
    """The schedule from the workspace's list (``shared``, a drift check) or one GET (before a
    write); OwnershipError when it is not ours."""
    ml = backend.client(workspace)
    name = schedule_name(pipeline)
    found, answered = None, False
    if shared:
        answered, found = backend.snapshots.find(
            _scope(workspace),
            name,
            lambda: backend._call(
                "schedules",
                lambda: [
                    (str(s.name), s)
                    # "All": the default lists enabled schedules only
                    for s in ml.schedules.list(list_view_type="All")
                ],
            ),
            lambda s: _provisioning(s.provisioning_state) not in azureml._IN_PROGRESS,
        )
    if not answered:
        found = backend._get(f"schedule {name}", lambda: ml.schedules.get(name))
    if found is None:
        return None
    state = _state(workspace, pipeline, found)
    _ours(backend, workspace, name, pipeline, state.tags)
    return state


def get(
    backend: AzureMLBackend, workspace: str, pipeline: str
) -> base.PipelineScheduleState | None:
    return _read(backend, workspace, pipeline, shared=True)


def _job(backend: AzureMLBackend, spec: base.PipelineScheduleSpec) -> Any:
    """The pipeline job each firing submits, as ``pipelines`` submits a run: its files checked
    against the source root, loaded by the SDK's loader, with the run's tags and the job
    properties a run is found (``amlops-pipeline``) and its models registered by."""
    where = f"pipeline {spec.pipeline}"
    pipelines.admit_files(backend, spec.job, where)
    body = pipelines.job_document(spec.job, spec.pipeline)  # each firing is a new job
    body["tags"] = {
        **{str(k): str(v) for k, v in dict(body.get("tags") or {}).items()},
        **spec.tags,
        base.TAG_OWNER: backend.owner,
        azureml.TAG_FINGERPRINT: spec.fingerprint,
    }
    try:
        return pipelines.load(body, backend.source_root or Path.cwd())
    except Exception as exc:  # the SDK's loader refused what validate accepted
        raise base.BackendError(
            backend.scrub(f"{where}: Azure ML cannot load its job: {exc}")
        ) from None


def create_or_update(
    backend: AzureMLBackend, spec: base.PipelineScheduleSpec
) -> base.PipelineScheduleState:
    from azure.ai.ml.entities import CronTrigger, JobSchedule

    current = _read(backend, spec.workspace, spec.pipeline, shared=False)
    if current is not None and current.provisioning_state in azureml._IN_PROGRESS:
        return current  # Azure is busy with it: observe it next time
    name = schedule_name(spec.pipeline)
    tags = {
        **spec.tags,
        azureml.TAG_FINGERPRINT: spec.fingerprint,
        TAG_TIME_ZONE: spec.time_zone,
        base.TAG_OWNER: backend.owner,
    }
    schedule = JobSchedule(
        name=name,
        trigger=CronTrigger(expression=spec.cron, time_zone=windows_time_zone(spec.time_zone)),
        create_job=_job(backend, spec),
        tags=tags,
        is_enabled=spec.enabled,
    )
    ml = backend.client(spec.workspace)
    backend.snapshots.invalidate(_scope(spec.workspace), name)
    # uploads the job's code folders and registers its components first (within the deadline)
    backend._upload(
        f"schedule pipeline {spec.pipeline}",
        lambda: ml.schedules.begin_create_or_update(schedule),
    )
    backend._owned.add(("schedule", spec.workspace, name))
    return base.PipelineScheduleState.accepted(
        spec,
        base.ProvisioningState.UPDATING if current else base.ProvisioningState.CREATING,
        tags,
    )


def disable(backend: AzureMLBackend, workspace: str, pipeline: str) -> None:
    _disable(backend, _read(backend, workspace, pipeline, shared=False), wait=False)


def _disable(
    backend: AzureMLBackend, current: base.PipelineScheduleState | None, *, wait: bool
) -> None:
    """Disable the schedule ``current`` (just read with a GET) says is enabled."""
    if current is None or not current.enabled:
        return
    if current.provisioning_state in azureml._IN_PROGRESS:
        return  # Azure would refuse the write (409): the reconcile comes back soon
    ml = backend.client(current.workspace)
    name = schedule_name(current.pipeline)
    backend.snapshots.invalidate(_scope(current.workspace), name)
    poller = backend._upload(f"disable schedule {name}", lambda: ml.schedules.begin_disable(name))
    if wait:
        backend._upload(f"disable schedule {name}", poller.result)


def delete(backend: AzureMLBackend, workspace: str, pipeline: str) -> None:
    current = _read(backend, workspace, pipeline, shared=False)
    if current is None:
        return
    _disable(backend, current, wait=True)  # Azure ML deletes only disabled schedules
    ml = backend.client(workspace)
    name = schedule_name(pipeline)
    backend.snapshots.invalidate(_scope(workspace), name)
    backend._call(f"delete schedule {name}", lambda: ml.schedules.begin_delete(name))
