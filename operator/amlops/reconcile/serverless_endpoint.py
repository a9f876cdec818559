"""ServerlessEndpoint: a model-catalog model served as a service, and the Marketplace
subscription a non-Microsoft model needs first.

The subscription comes first: Azure ML refuses a serverless endpoint for a Marketplace model the
workspace has not subscribed to. It is named after the model, so every endpoint of one model
shares it, and it is kept when an endpoint goes (another endpoint may serve the same model; a
subscription costs nothing until an endpoint is called).

Drift: every reconcile reads the endpoint back, so one deleted outside Git is created again,
and one serving another model or with another auth mode is put back. Azure ML cannot change an
endpoint's model in place: such an endpoint is deleted, and the next reconcile creates it anew.
Tags (provenance) never cause a write on their own, as for online endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from amlops.backends.base import (
    Backend,
    MarketplaceSubscriptionSpec,
    MarketplaceSubscriptionState,
    ModelRef,
    ProvisioningState,
    ServerlessEndpointSpec,
    ServerlessEndpointState,
)
from amlops.core.assets import parse_registry_model_id
from amlops.kinds.serverless_endpoint import ServerlessEndpoint, parse
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status, suspended
from amlops.reconcile.inputs import Gone, Inputs, accepted

PROGRESS_REQUEUE_S = 5.0
_IN_PROGRESS = (ProvisioningState.CREATING, ProvisioningState.UPDATING, ProvisioningState.DELETING)
_SUBSCRIPTION_NAME_MAX = 50


@dataclass(frozen=True)
class ServerlessEndpointDesired:
    workspace: str
    name: str
    generation: int
    spec: ServerlessEndpointSpec
    subscription: MarketplaceSubscriptionSpec | None  # None: a Microsoft model needs none
    suspend: bool = False
    deletion_policy: str = "Delete"

    @property
    def auth_mode(self) -> str:
        return self.spec.auth_mode


@dataclass(frozen=True)
class ServerlessEndpointObserved:
    endpoint: ServerlessEndpointState | None
    subscription: MarketplaceSubscriptionState | None = None


@dataclass(frozen=True)
class Subscribe:
    spec: MarketplaceSubscriptionSpec

    def describe(self) -> str:
        return f"subscribe to {self.spec.model_id} ({self.spec.name})"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_marketplace_subscription(self.spec)


@dataclass(frozen=True)
class CreateOrUpdateServerlessEndpoint:
    spec: ServerlessEndpointSpec

    def describe(self) -> str:
        return f"apply serverless endpoint {self.spec.name} ({self.spec.model_id})"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_serverless_endpoint(self.spec)


@dataclass(frozen=True)
class DeleteServerlessEndpoint:
    workspace: str
    name: str
    why: str = ""

    def describe(self) -> str:
        return f"delete serverless endpoint {self.name}" + (f" ({self.why})" if self.why else "")

    def execute(self, backend: Backend) -> None:
        backend.delete_serverless_endpoint(self.workspace, self.name)


def subscription_name(model: ModelRef) -> str:
    """The subscription of a model: one per model and workspace, whatever its version."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.name.lower()).strip("-")
    return name[:_SUBSCRIPTION_NAME_MAX].rstrip("-") or "model"


def desired_serverless_endpoint(
    inputs: Inputs, endpoint: ServerlessEndpoint
) -> ServerlessEndpointDesired:
    name = endpoint.name or inputs.name
    # provenance last: the manifest's own tags cannot claim another commit
    tags = {**endpoint.tags, **inputs.tags}
    subscription = (
        MarketplaceSubscriptionSpec(
            workspace=inputs.workspace,
            name=subscription_name(endpoint.model),
            model=endpoint.model,
            tags=tags,
        )
        if endpoint.needs_subscription
        else None
    )
    return ServerlessEndpointDesired(
        workspace=inputs.workspace,
        name=name,
        generation=inputs.generation,
        spec=ServerlessEndpointSpec(
            workspace=inputs.workspace,
            name=name,
            model=endpoint.model,
            model_id=endpoint.model_id,
            auth_mode=endpoint.auth_mode,
            tags=tags,
        ),
        subscription=subscription,
        suspend=endpoint.lifecycle.suspend,
        deletion_policy=endpoint.lifecycle.deletion_policy,
    )


def desired(inputs: Inputs) -> ServerlessEndpointDesired:
    """The spec parsed once (``amlops.kinds.serverless_endpoint``); SpecError when unreadable."""
    return desired_serverless_endpoint(inputs, accepted(parse(inputs.spec, inputs.source.locator)))


def observe(backend: Backend, desired: ServerlessEndpointDesired) -> ServerlessEndpointObserved:
    subscription = (
        backend.get_marketplace_subscription(desired.workspace, desired.subscription.name)
        if desired.subscription is not None
        else None
    )
    return ServerlessEndpointObserved(
        backend.get_serverless_endpoint(desired.workspace, desired.name), subscription
    )


def same_model(want: ModelRef, model_id: str) -> bool:
    """The endpoint serves the model asked for; an unpinned one, any version of it."""
    have = parse_registry_model_id(model_id)
    if have is None:
        return False
    if (have.registry, have.name) != (want.registry, want.name):
        return False
    return want.version is None or have.version == want.version


def reconcile_serverless_endpoint(
    desired: ServerlessEndpointDesired,
    observed: ServerlessEndpointObserved,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    spec = desired.spec
    endpoint = observed.endpoint
    fields: dict[str, Any] = {
        "endpointName": desired.name,  # what a finalizer deletes
        "modelId": spec.model_id,
        "scoringUri": endpoint.scoring_uri if endpoint is not None else None,
        "marketplaceSubscription": (
            desired.subscription.name if desired.subscription is not None else None
        ),
    }

    def result(outcome: Outcome, *actions: Action) -> Result:
        status = build_status(outcome, desired.generation, previous, now, **fields)
        requeue = PROGRESS_REQUEUE_S if outcome.phase is Phase.RECONCILING else None
        return Result(tuple(actions), status, outcome, requeue)

    if desired.suspend:
        return result(suspended())
    wanted = desired.subscription
    if wanted is not None:
        subscribed = observed.subscription
        if subscribed is None:
            return result(
                Outcome(Phase.RECONCILING, "Subscribing", f"subscribing to {wanted.model_id}"),
                Subscribe(wanted),
            )
        if subscribed.model_id.lower() != wanted.model_id.lower():
            return result(
                Outcome(
                    Phase.STALLED,
                    "SubscriptionConflict",
                    f"the Marketplace subscription {wanted.name} is to {subscribed.model_id}, not "
                    f"{wanted.model_id}; amlops never changes a subscription: rename or remove it",
                )
            )
        if subscribed.provisioning_state is ProvisioningState.FAILED:
            return result(
                Outcome(
                    Phase.STALLED,
                    "SubscriptionFailed",
                    f"the Marketplace subscription {wanted.name} to {wanted.model_id} failed: "
                    f"{subscribed.message or 'no reason given'}; accept the offer's terms for "
                    "the subscription, or serve a Microsoft model (registry azureml)",
                )
            )
        if subscribed.provisioning_state is not ProvisioningState.SUCCEEDED:
            return result(
                Outcome(
                    Phase.RECONCILING,
                    "Subscribing",
                    f"the Marketplace subscription {wanted.name} is "
                    f"{subscribed.provisioning_state}",
                )
            )
    if endpoint is None:
        return result(
            Outcome(Phase.RECONCILING, "Creating", f"creating {desired.name} ({spec.model_id})"),
            CreateOrUpdateServerlessEndpoint(spec),
        )
    if endpoint.provisioning_state in _IN_PROGRESS:
        return result(
            Outcome(
                Phase.RECONCILING,
                "Progressing",
                f"{desired.name} is {endpoint.provisioning_state}"
                + (f": {endpoint.message}" if endpoint.message else ""),
            )
        )
    if not same_model(spec.model, endpoint.model_id):
        # Azure ML cannot change the model of an endpoint: replace it
        return result(
            Outcome(
                Phase.RECONCILING,
                "Replacing",
                f"{desired.name} serves {endpoint.model_id}, not {spec.model_id}: replacing it",
            ),
            DeleteServerlessEndpoint(
                desired.workspace, desired.name, f"serves {endpoint.model_id}"
            ),
        )
    if endpoint.provisioning_state is ProvisioningState.FAILED:
        return result(
            Outcome(
                Phase.STALLED,
                "EndpointFailed",
                f"{desired.name} failed: {endpoint.message or 'no reason given'}; fix the "
                "manifest (a change retries it)",
            )
        )
    if (
        endpoint.provisioning_state is not ProvisioningState.SUCCEEDED
        or endpoint.auth_mode != spec.auth_mode
    ):
        return result(
            Outcome(Phase.RECONCILING, "Progressing", f"applying {desired.name}"),
            # the endpoint keeps its tags
            CreateOrUpdateServerlessEndpoint(replace(spec, tags=endpoint.tags or spec.tags)),
        )
    message = f"serving {spec.model_id} at {endpoint.scoring_uri}"
    if endpoint.message:
        message += f"; {endpoint.message}"
    return result(Outcome(Phase.READY, "Serving", message))


def finalize(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    """The object is gone: delete the endpoint, unless told to retain it. The subscription
    stays (see the module's docstring)."""
    name = gone.status.get("endpointName")
    if gone.deletion_policy == "Retain" or not isinstance(name, str):
        return ()
    return (DeleteServerlessEndpoint(gone.workspace, name),)


RECONCILER = driver.Reconciler(
    "ServerlessEndpoint", desired, observe, reconcile_serverless_endpoint, finalize
)
