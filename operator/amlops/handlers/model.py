"""Model custom resources: register the files as an Azure ML model version."""

from __future__ import annotations

from dataclasses import replace

from amlops.backends.base import Backend
from amlops.handlers import flow
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import model as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.inputs import Source


def desired(obj: Resource, source: Source) -> core.ModelDesired:
    wanted = core.desired_model(obj.workspace, obj.name, obj.spec, obj.generation, source)
    tags = {**wanted.spec.tags, **obj.tags()}
    return replace(wanted, spec=replace(wanted.spec, tags=tags))


def reconcile(_rt: Runtime, backend: Backend, obj: Resource, want: core.ModelDesired) -> Result:
    return driver.reconcile_model(backend, want, obj.status)


def finalize(_rt: Runtime, obj: Resource) -> tuple[Action, ...]:
    return core.finalize_model(obj.workspace, obj.status or {}, obj.deletion_policy)


KIND = flow.Kind("Model", desired, reconcile, finalize)
flow.register(KIND)
