"""The operator kinds as the drivers reconcile them: one entry per kind, read by ``amlops up``
(``amlops.reconcile.tree``) and the Kopf handlers (``amlops.handlers.flow``) alike.

Each entry is the kind's steps, all in its reconcile module: its desired state (the spec parsed
once by its ``amlops.kinds`` module, paths resolved), what it observes in the backend, its pure
reconciler (whose actions carry their own ``execute``), and what deleting the object does.
``amlops.reconcile.driver`` runs them, knowing no kind. A new operator kind is its reconcile
module (ending in its ``RECONCILER``) plus
one line in ``RECONCILERS``.
"""

from __future__ import annotations

from typing import Any

from amlops.reconcile import endpoint, model, pipeline, serverless_endpoint
from amlops.reconcile.driver import Reconciler as Reconciler

# Built by handlers/objects.py from a custom resource, so it is named here too.
from amlops.reconcile.inputs import Gone as Gone
from amlops.reconcile.inputs import Inputs as Inputs

RECONCILERS: dict[str, Reconciler[Any, Any]] = {
    r.kind: r
    for r in (
        model.RECONCILER,
        pipeline.RECONCILER,
        endpoint.RECONCILER,
        serverless_endpoint.RECONCILER,
    )
}
