"""Pipeline custom resources: run the Azure ML pipeline job on change, schedule or request."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf

from amlops import API_GROUP
from amlops.backends.base import Backend
from amlops.crds import VERSION
from amlops.handlers import flow
from amlops.handlers.config import SETTINGS
from amlops.handlers.objects import ANNOTATION_RUN_REQUESTED, Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import pipeline as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.source import Source

RESOURCE = (API_GROUP, VERSION, "pipelines")


def desired(obj: Resource, source: Source) -> core.PipelineDesired:
    requested = obj.annotations.get(ANNOTATION_RUN_REQUESTED)
    wanted = core.desired_pipeline(
        obj.workspace, obj.name, obj.spec, obj.generation, source, requested
    )
    return replace(wanted, tags=obj.tags())


def reconcile(_rt: Runtime, backend: Backend, obj: Resource, want: core.PipelineDesired) -> Result:
    return driver.reconcile_pipeline(backend, want, obj.status)


def finalize(rt: Runtime, obj: Resource) -> tuple[Action, ...]:
    run = rt.backend.latest_pipeline_run(obj.workspace, obj.name)
    return core.finalize_pipeline(obj.workspace, run)


KIND = flow.Kind("Pipeline", desired, reconcile, finalize)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_pipeline(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    flow.reconcile(KIND, body, patch, memo, retry, logger)


@kopf.timer(*RESOURCE, **SETTINGS.timer_options())
def check_pipeline_drift(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int = 0,  # Kopf passes it; TimerFn does not declare it
    **_: Any,
) -> None:
    """Also starts scheduled runs: a due ``schedule`` is noticed within one interval."""
    flow.drift(KIND, body, patch, memo, retry, logger)


@kopf.on.delete(*RESOURCE)
def delete_pipeline(
    body: kopf.Body, memo: kopf.Memo, retry: int, logger: kopf.Logger, **_: Any
) -> None:
    flow.finalize(KIND, body, memo, retry, logger)
