"""Endpoint custom resources: what the operator adds to an endpoint's reconcile.

An Endpoint waits for the models it serves (DependencyNotReady, retried with backoff); its
keys go to a Secret it owns (``amlops.handlers.keys``), which only the operator can write.
"""

from __future__ import annotations

from amlops.backends.base import Backend
from amlops.handlers import keys
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile.actions import Result
from amlops.reconcile.endpoint import EndpointDesired


def publish_keys(
    rt: Runtime, backend: Backend, obj: Resource, want: EndpointDesired, result: Result
) -> Result:
    return keys.publish(rt.kube, backend, obj, want.workspace, want.name, want.auth_mode, result)
