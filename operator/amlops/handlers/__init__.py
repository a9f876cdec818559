"""The Kopf operator: ``kopf run -m amlops.handlers`` (or ``amlops operator``).

Importing the package registers every handler: the settings/startup hook and, for each kind in
``amlops.reconcile.registry``, its handlers over ``amlops.handlers.flow``, which drives the same
reconcile entry points ``amlops up`` uses. ``AFTER`` holds what the operator adds to a kind's
reconcile (an Endpoint's or ServerlessEndpoint's keys Secret); a kind not in it needs nothing here.
GitSources have handlers of their own (``git_source``: fetch, validate, apply, prune) and the
push receiver that triggers them (``receiver``).
"""

from typing import Any

from amlops.handlers import (
    admission,
    endpoint,
    flow,
    git_source,
    keys,
    receiver,
    settings,
    tenancy,
)
from amlops.reconcile.registry import RECONCILERS

AFTER: dict[str, flow.After[Any]] = {
    "Endpoint": endpoint.publishing_keys(keys.online_keys),
    "ServerlessEndpoint": endpoint.publishing_keys(keys.serverless_keys),
}
KINDS: dict[str, flow.Kind[Any]] = {
    name: flow.kind_of(reconciler, AFTER.get(name)) for name, reconciler in RECONCILERS.items()
}
for _kind in KINDS.values():
    flow.register(_kind)
admission.register()  # the admission webhooks of every kind, when AMLOPS_WEBHOOKS is on
git_source.register()
tenancy.register()  # the WorkspaceBinding index every handler and webhook reads

__all__ = ["AFTER", "KINDS", "receiver", "settings"]
