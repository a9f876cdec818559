"""Endpoint custom resources: an online endpoint, its deployments and the traffic split.

An Endpoint waits for the models it serves (DependencyNotReady, retried with backoff); its
keys go to a Secret it owns (``amlops.handlers.keys``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf

from amlops import API_GROUP
from amlops.backends.base import Backend
from amlops.crds import VERSION
from amlops.handlers import flow, keys
from amlops.handlers.config import SETTINGS
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import endpoint as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.source import Source

RESOURCE = (API_GROUP, VERSION, "endpoints")


def desired(obj: Resource, source: Source) -> core.EndpointDesired:
    wanted = core.desired_endpoint(obj.workspace, obj.name, obj.spec, obj.generation, source)
    return replace(wanted, tags=obj.tags())


def reconcile(rt: Runtime, backend: Backend, obj: Resource, want: core.EndpointDesired) -> Result:
    result = driver.reconcile_endpoint(backend, want, obj.status)
    return keys.publish(rt.kube, backend, obj, want.workspace, want.name, want.auth_mode, result)


def finalize(_rt: Runtime, obj: Resource) -> tuple[Action, ...]:
    return core.finalize_endpoint(obj.workspace, obj.status or {}, obj.deletion_policy)


KIND = flow.Kind("Endpoint", desired, reconcile, finalize)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile_endpoint(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    flow.reconcile(KIND, body, patch, memo, retry, logger)


@kopf.timer(*RESOURCE, **SETTINGS.timer_options())
def check_endpoint_drift(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int = 0,  # Kopf passes it; TimerFn does not declare it
    **_: Any,
) -> None:
    flow.drift(KIND, body, patch, memo, retry, logger)


@kopf.on.delete(*RESOURCE)
def delete_endpoint(
    body: kopf.Body, memo: kopf.Memo, retry: int, logger: kopf.Logger, **_: Any
) -> None:
    flow.finalize(KIND, body, memo, retry, logger)
