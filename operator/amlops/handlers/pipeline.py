"""Pipeline custom resources: run the Azure ML pipeline job on change, schedule or request."""

from __future__ import annotations

from dataclasses import replace

from amlops.backends.base import Backend
from amlops.handlers import flow
from amlops.handlers.objects import ANNOTATION_RUN_REQUESTED, Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import pipeline as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.inputs import Source


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
flow.register(KIND)
