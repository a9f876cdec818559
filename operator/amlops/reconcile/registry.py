"""The operator kinds as the drivers reconcile them: one entry per kind, read by ``amlops up``
(``amlops.reconcile.tree``) and the Kopf handlers (``amlops.handlers.flow``) alike.

Each entry is the kind's three entry points: its desired state (the spec parsed once by its
``amlops.kinds`` module, paths resolved), one reconcile against a backend (observe, decide,
act: ``amlops.reconcile.driver``), and what deleting the object does. A new operator kind is
its reconcile module plus one line in ``RECONCILERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from amlops.backends.base import Backend
from amlops.reconcile import driver, endpoint, model, pipeline
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.inputs import Inputs

D = TypeVar("D")


@dataclass(frozen=True)
class Gone:
    """An object whose manifest or custom resource was deleted, as its last status left it."""

    workspace: str
    name: str
    status: Mapping[str, Any]
    deletion_policy: str


@dataclass(frozen=True)
class Reconciler(Generic[D]):
    kind: str
    desired: Callable[[Inputs], D]  # raises SpecError (or a ValueError) for a bad spec
    reconcile: Callable[[Backend, D, Mapping[str, Any] | None, datetime | None], Result]
    finalize: Callable[[Backend, Gone], tuple[Action, ...]]


def _finalize_model(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    return model.finalize_model(gone.workspace, gone.status, gone.deletion_policy)


def _finalize_pipeline(backend: Backend, gone: Gone) -> tuple[Action, ...]:
    run = backend.latest_pipeline_run(gone.workspace, gone.name)
    return pipeline.finalize_pipeline(gone.workspace, run)


def _finalize_endpoint(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    return endpoint.finalize_endpoint(gone.workspace, gone.status, gone.deletion_policy)


RECONCILERS: dict[str, Reconciler[Any]] = {
    r.kind: r
    for r in (
        Reconciler("Model", model.desired, driver.reconcile_model, _finalize_model),
        Reconciler("Pipeline", pipeline.desired, driver.reconcile_pipeline, _finalize_pipeline),
        Reconciler("Endpoint", endpoint.desired, driver.reconcile_endpoint, _finalize_endpoint),
    )
}
