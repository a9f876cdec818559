"""Endpoint custom resources: an online endpoint, its deployments and the traffic split.

An Endpoint waits for the models it serves (DependencyNotReady, retried with backoff); its
keys go to a Secret it owns (``amlops.handlers.keys``).
"""

from __future__ import annotations

from dataclasses import replace

from amlops.backends.base import Backend
from amlops.handlers import flow, keys
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import driver
from amlops.reconcile import endpoint as core
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.inputs import Source


def desired(obj: Resource, source: Source) -> core.EndpointDesired:
    wanted = core.desired_endpoint(obj.workspace, obj.name, obj.spec, obj.generation, source)
    return replace(wanted, tags=obj.tags())


def reconcile(rt: Runtime, backend: Backend, obj: Resource, want: core.EndpointDesired) -> Result:
    result = driver.reconcile_endpoint(backend, want, obj.status)
    return keys.publish(rt.kube, backend, obj, want.workspace, want.name, want.auth_mode, result)


def finalize(_rt: Runtime, obj: Resource) -> tuple[Action, ...]:
    return core.finalize_endpoint(obj.workspace, obj.status or {}, obj.deletion_policy)


KIND = flow.Kind("Endpoint", desired, reconcile, finalize)
flow.register(KIND)
