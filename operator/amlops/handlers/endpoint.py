"""Endpoint and ServerlessEndpoint custom resources: what the operator adds to their reconcile.

An Endpoint waits for the models it serves (DependencyNotReady, retried with backoff). The keys
of either go to a Secret the object owns (``amlops.handlers.keys``), which only the operator can
write: one hook, given how the kind's keys are read from the backend.
"""

from __future__ import annotations

from typing import Protocol

from amlops.backends.base import Backend
from amlops.handlers import flow, keys
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile.actions import Result


class Keyed(Protocol):
    """What a kind's desired state says about the endpoint whose keys it publishes."""

    @property
    def workspace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def auth_mode(self) -> str: ...


def publishing_keys(keys_of: keys.KeysOf) -> flow.After[Keyed]:
    """The after-reconcile hook that publishes the endpoint's keys into its Secret."""

    def after(rt: Runtime, backend: Backend, obj: Resource, want: Keyed, result: Result) -> Result:
        return keys.publish(
            rt.kube, backend, obj, want.workspace, want.name, want.auth_mode, result, keys_of
        )

    return after
