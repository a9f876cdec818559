"""The reconcile core: pure functions from (desired, observed) to (actions, status), per kind.

Entry points, one module per kind:

* ``model.desired_model`` / ``model.reconcile_model`` / ``model.finalize_model``
* ``pipeline.desired_pipeline`` / ``pipeline.reconcile_pipeline`` / ``pipeline.finalize_pipeline``
* ``endpoint.desired_endpoint`` / ``endpoint.reconcile_endpoint`` / ``endpoint.finalize_endpoint``

``driver`` is the one module here that talks to a backend: it observes, calls the pure
function and carries out the actions. ``tree`` reconciles a whole manifest tree (``amlops up``).
"""
