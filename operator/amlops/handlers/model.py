"""Model custom resources: register the files as an Azure ML model version."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf

from amlops import API_GROUP
from amlops.backends.base import Backend
from amlops.crds import VERSION
from amlops.handlers import flow
from amlops.handlers.config import SETTINGS
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import model as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.source import Source

RESOURCE = (API_GROUP, VERSION, "models")


def desired(obj: Resource, source: Source) -> core.ModelDesired:
    wanted = core.desired_model(obj.workspace, obj.name, obj.spec, obj.generation, source)
    tags = {**wanted.spec.tags, **obj.tags()}
    return replace(wanted, spec=replace(wanted.spec, tags=tags))


def reconcile(_rt: Runtime, backend: Backend, obj: Resource, want: core.ModelDesired) -> Result:
    return driver.reconcile_model(backend, want, obj.status)


def finalize(_rt: Runtime, obj: Resource) -> tuple[Action, ...]:
    return core.finalize_model(obj.workspace, obj.status or {}, obj.deletion_policy)


KIND = flow.Kind("Model", desired, reconcile, finalize)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_model(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    flow.reconcile(KIND, body, patch, memo, retry, logger)


@kopf.timer(*RESOURCE, **SETTINGS.timer_options())
def check_model_drift(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int = 0,  # Kopf passes it; TimerFn does not declare it
    **_: Any,
) -> None:
    flow.drift(KIND, body, patch, memo, retry, logger)


@kopf.on.delete(*RESOURCE)
def delete_model(
    body: kopf.Body, memo: kopf.Memo, retry: int, logger: kopf.Logger, **_: Any
) -> None:
    flow.finalize(KIND, body, memo, retry, logger)
