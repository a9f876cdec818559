"""The operator kinds as the drivers reconcile them: one entry per kind, read by ``amlops up``
(``amlops.reconcile.tree``) and the Kopf handlers (``amlops.handlers.flow``) alike.

Each entry is the kind's steps, all in its reconcile module: its desired state (the spec parsed
once by its ``amlops.kinds`` module, paths resolved), what it observes in the backend, its pure
reconciler (whose actions carry their own ``execute``), and what deleting the object does.
``amlops.reconcile.driver`` runs them, knowing no kind. A new operator kind is its reconcile
module plus one line in ``RECONCILERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from amlops.backends.base import Backend
from amlops.reconcile import driver, endpoint, model, pipeline
from amlops.reconcile.actions import Action, Result

# Built by handlers/objects.py from a custom resource, so it is named here too.
from amlops.reconcile.inputs import Gone, Inputs

D = TypeVar("D", bound=driver.Desired)
Observed = TypeVar("Observed")


@dataclass(frozen=True)
class Reconciler(Generic[D, Observed]):
    kind: str
    desired: Callable[[Inputs], D]  # raises SpecError (or a ValueError) for a bad spec
    observe: Callable[[Backend, D], Observed]
    decide: Callable[[D, Observed, Mapping[str, Any] | None, datetime], Result]  # pure
    finalize: Callable[[Backend, Gone], tuple[Action, ...]]

    def reconcile(
        self,
        backend: Backend,
        desired: D,
        previous: Mapping[str, Any] | None,
        now: datetime | None = None,
    ) -> Result:
        """Observe, decide, act; the Result's actions are the ones carried out."""
        return driver.run(backend, desired, previous, now, self.observe, self.decide)


RECONCILERS: dict[str, Reconciler[Any, Any]] = {
    r.kind: r
    for r in (
        Reconciler("Model", model.desired, model.observe, model.reconcile_model, model.finalize),
        Reconciler(
            "Pipeline",
            pipeline.desired,
            pipeline.observe,
            pipeline.reconcile_pipeline,
            pipeline.finalize,
        ),
        Reconciler(
            "Endpoint",
            endpoint.desired,
            endpoint.observe,
            endpoint.reconcile_endpoint,
            endpoint.finalize,
        ),
    )
}
