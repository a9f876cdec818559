"""The reconcile core: pure functions from (desired, observed) to (actions, status), per kind.

Entry points, one module per kind, each reading the spec its ``amlops.kinds`` module parsed:

* ``model.desired`` / ``model.reconcile_model`` / ``model.finalize_model``
* ``pipeline.desired`` / ``pipeline.reconcile_pipeline`` / ``pipeline.finalize_pipeline``
* ``endpoint.desired`` / ``endpoint.reconcile_endpoint`` / ``endpoint.finalize_endpoint``

``driver`` is the one module here that talks to a backend: it observes, calls the pure
function and carries out the actions. ``registry`` holds each kind's entry points for the
drivers; ``tree`` reconciles a whole manifest tree (``amlops up``).
"""
