"""The reconcile core: pure functions from (desired, observed) to (actions, status), per kind.

One module per kind, each reading the spec its ``amlops.kinds`` module parsed and holding the
kind's steps: ``desired`` (the spec, paths resolved), ``observe`` (what it reads from the
backend, through ``observe``'s helpers), the pure ``reconcile_<kind>``, ``finalize`` (what
deleting the object does), and its actions: frozen dataclasses, each with the ``execute`` that
carries it out.

``registry`` holds each kind's steps for the drivers; ``driver`` runs them, knowing no kind
(observe, decide, execute the actions, report); ``tree`` reconciles a whole manifest tree
(``amlops up``).
"""
