"""Endpoint: an online endpoint, its deployments and the traffic split between them.

Each deployment is (re)created when it is missing, stopped, or its fingerprint changed (the
deployment as written plus its code folder's and model's digests). A deployment waits for its
model to be registered (DependencyNotReady) without holding back the others. A model written
out in the deployment (``model: {path: ...}``) is registered first, as Azure ML does: a model
of its own, whose next version holds the files whenever they change (like an unpinned Model);
the deployment then serves that version. Traffic is gated by health: only deployments that
came up (Succeeded, current fingerprint) get their share; the rest keep 0% and their share is
spread over the healthy ones, so the split sent to the backend always sums to 100 (or is all 0
when nothing is healthy). A deployment that fails to come up stalls the endpoint until its
spec, code or model changes; the endpoint stalls only once no other deployment is still
starting, so that the message names every deployment that failed, each with its reason (which
names the server's log).

Tags (the Git commit and manifest, amlops.core.provenance) never cause a write on their own:
a new commit that leaves the endpoint as it was must not restart its deployments. They are
recorded when an asset is made: the endpoint keeps the tags it was created with (it is a stable
address), and a deployment carries the tags of the commit that produced its current
fingerprint, kept when a stopped deployment is started again unchanged. Tags that are missing
are drift, though: an endpoint without one of the provenance tags (stripped in the portal) is
written again with the tags it kept plus the current ones it lacks (a deployment's stripped
tags take its fingerprint with them, so it is redeployed under the current ones).

A deployment whose model disappears (the Model deleted, a version deleted outside Git) keeps
serving what it was deployed with, as in Azure ML: the endpoint reports the missing model
(DependencyNotReady) and leaves the traffic split as it is until the model is back; only a
deployment never deployed waits at 0%.

An endpoint made for another object (its ``amlops-object`` tag names another namespace/name)
is never adopted, changed or deleted: the object stalls with ``OwnedElsewhere``. An endpoint
that lost the tag is drift and gets it back, as for the other provenance tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from amlops.backends.base import (
    Backend,
    DeploymentSpec,
    DeploymentState,
    EndpointSpec,
    EndpointState,
    ModelRef,
    ModelVersion,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.core.findings import Finding
from amlops.core.provenance import TAG_OBJECT
from amlops.core.source import FieldPath
from amlops.kinds.endpoint import Deployment, Endpoint, InlineModel, parse
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, DeleteOwned, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status, suspended
from amlops.reconcile.inputs import (
    Gone,
    Inputs,
    accepted,
    describe,
    digest_of,
    owned_elsewhere,
    owner_of,
)
from amlops.reconcile.model import RegisterModel
from amlops.reconcile.observe import digest_or_none, model_version

PROGRESS_REQUEUE_S = 0.5


@dataclass(frozen=True)
class DeploymentDesired:
    # the deployment as written, never sent as it is: the reconcile sends it through ``replace``
    # with the model version found, the fingerprint and the tags (its ``fingerprint`` is "")
    spec: DeploymentSpec
    register: ModelVersionSpec | None = None  # a model written out: ``spec.model`` once registered
    register_field: str = ""  # where its path is written, for messages

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class EndpointDesired:
    workspace: str
    name: str
    generation: int
    # what the backend is sent, as written: the reconcile gates its traffic by health and
    # writes it with the tags it keeps (``endpoint_tags``)
    spec: EndpointSpec
    deployments: tuple[DeploymentDesired, ...]
    problems: tuple[str, ...] = ()  # why the spec cannot be served as written, naming fields
    suspend: bool = False
    deletion_policy: str = "Delete"
    tags: Mapping[str, str] = field(default_factory=dict)  # provenance, for new assets

    @property
    def auth_mode(self) -> str:
        return self.spec.auth_mode


@dataclass(frozen=True)
class EndpointObserved:
    endpoint: EndpointState | None
    deployments: Mapping[str, DeploymentState]
    models: Mapping[str, ModelVersion | None]  # deployment name -> its model version
    code_digests: Mapping[str, str | None]  # deployment name -> digest; None: folder missing
    # deployment name -> digest of the files of the model it writes out; None: missing
    model_digests: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateOrUpdateEndpoint:
    spec: EndpointSpec

    def describe(self) -> str:
        split = ", ".join(f"{k} {v}%" for k, v in sorted(self.spec.traffic.items()))
        return f"apply endpoint {self.spec.name} ({split or 'no traffic'})"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_endpoint(self.spec)


@dataclass(frozen=True)
class DeleteEndpoint(DeleteOwned):
    workspace: str
    name: str

    def describe(self) -> str:
        return f"delete endpoint {self.name}"

    def ours(self, backend: Backend, owner: str) -> bool:
        current = backend.get_endpoint(self.workspace, self.name)
        return current is not None and not made_for_another(current.tags, owner)

    def delete(self, backend: Backend) -> None:
        backend.delete_endpoint(self.workspace, self.name)


def made_for_another(tags: Mapping[str, str], owner: str) -> bool:
    """The endpoint names another object than ``owner`` (one without the tag lost it: drift)."""
    theirs = tags.get(TAG_OBJECT)
    return theirs is not None and theirs != owner


@dataclass(frozen=True)
class CreateOrUpdateDeployment:
    spec: DeploymentSpec

    def describe(self) -> str:
        return f"deploy {self.spec.endpoint}/{self.spec.name} ({self.spec.model})"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_deployment(self.spec)


@dataclass(frozen=True)
class DeleteDeployment:
    workspace: str
    endpoint: str
    name: str

    def describe(self) -> str:
        return f"delete deployment {self.endpoint}/{self.name}"

    def execute(self, backend: Backend) -> None:
        backend.delete_deployment(self.workspace, self.endpoint, self.name)


def desired_endpoint(
    inputs: Inputs, endpoint: Endpoint, findings: Sequence[Finding] = ()
) -> EndpointDesired:
    """``findings``: why the spec cannot be served as written (``amlops.kinds.endpoint.parse``)."""
    name = endpoint.name or inputs.name
    deployments = [_deployment(inputs, name, i, dep) for i, dep in enumerate(endpoint.deployments)]
    problems = [describe(f) for f in findings]
    if not problems:  # the parse names a deployment without a model it can serve; if it did not
        problems = [
            f"{inputs.source.field(('spec', 'deployments', i, 'model'))}: no model it can serve"
            for i, d in enumerate(deployments)
            if d is None
        ]
    return EndpointDesired(
        workspace=inputs.workspace,
        name=name,
        generation=inputs.generation,
        spec=EndpointSpec(
            workspace=inputs.workspace,
            name=name,
            auth_mode=endpoint.auth_mode,
            traffic=endpoint.traffic,
            mirror_traffic=endpoint.mirror_traffic,
            description=endpoint.description,
        ),
        # one without a model it can serve is a problem, which stalls the endpoint: a live
        # deployment is never taken for one the spec dropped
        deployments=tuple(d for d in deployments if d is not None),
        problems=tuple(problems),
        suspend=endpoint.lifecycle.suspend,
        deletion_policy=endpoint.lifecycle.deletion_policy,
        tags=inputs.tags,
    )


def _deployment(
    inputs: Inputs, endpoint: str, index: int, dep: Deployment
) -> DeploymentDesired | None:
    register = _inline_model(inputs, endpoint, index, dep)
    model = _served(dep, register)
    if model is None:
        return None
    code = ("spec", "deployments", index, "code_configuration", "code")
    spec = DeploymentSpec(
        workspace=inputs.workspace,
        endpoint=endpoint,
        name=dep.name,
        model=model,
        code_dir=inputs.source.resolve(code, dep.code) if dep.code is not None else None,
        scoring_script=dep.scoring_script,
        fingerprint="",  # of the files and model version the reconcile finds
        environment_variables=dep.environment_variables,
        instance_count=dep.instance_count,
        written=dep.written,
    )
    register_field = inputs.source.field(_model_path(index)) if register is not None else ""
    return DeploymentDesired(spec, register, register_field)


def _model_path(index: int) -> FieldPath:
    return ("spec", "deployments", index, "model", "path")


def _served(dep: Deployment, register: ModelVersionSpec | None) -> ModelRef | None:
    """The model version the deployment serves: the one named, or its written-out model's."""
    if register is not None:
        return ModelRef(register.name, register.version)
    return dep.model if isinstance(dep.model, ModelRef) else None


def _inline_model(
    inputs: Inputs, endpoint: str, index: int, dep: Deployment
) -> ModelVersionSpec | None:
    """The model version a deployment's written-out model registers. Unnamed, it is named
    after the endpoint and the deployment: stable across commits (so changed files become
    its next version, not a new model) and apart from every other deployment's."""
    model = dep.model
    if not isinstance(model, InlineModel):
        return None
    return ModelVersionSpec(
        name=model.name or f"{endpoint}-{dep.name}",
        version=model.version,
        path=inputs.source.resolve(_model_path(index), model.path),
        type=model.type,
        description=f"served by deployment {endpoint}/{dep.name}",
        tags=inputs.tags,
    )


def desired(inputs: Inputs) -> EndpointDesired:
    """The spec parsed once (``amlops.kinds.endpoint``); SpecError when it cannot be read."""
    endpoint, findings = parse(inputs.spec, inputs.source.locator)
    return desired_endpoint(inputs, accepted((endpoint, findings)), findings)


def observe(backend: Backend, desired: EndpointDesired) -> EndpointObserved:
    endpoint = backend.get_endpoint(desired.workspace, desired.name)
    deployments = (
        {d.name: d for d in backend.list_deployments(desired.workspace, desired.name)}
        if endpoint is not None
        else {}
    )
    return EndpointObserved(
        endpoint=endpoint,
        deployments=deployments,
        models={
            d.name: model_version(backend, desired.workspace, d.spec.model)
            for d in desired.deployments
        },
        code_digests={
            d.name: digest_or_none(d.spec.code_dir)
            for d in desired.deployments
            if d.spec.code_dir is not None
        },
        model_digests={
            d.name: digest_or_none(d.register.path)
            for d in desired.deployments
            if d.register is not None
        },
    )


def renormalize(weights: Mapping[str, int]) -> dict[str, int]:
    """Scale weights to sum to 100 (largest remainder, ties by name); all 0 stays all 0."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, 0)
    exact = {k: v * 100 / total for k, v in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    short = 100 - sum(out.values())
    for name in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:short]:
        out[name] += 1
    return out


def endpoint_tags(current: EndpointState | None, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags an endpoint is written with: the ones it has (it keeps the commit it was made
    by), plus those of ``tags`` (the current provenance) that it lost; a new one gets ``tags``."""
    kept = dict(current.tags) if current is not None else {}
    return {**tags, **kept}


def deployment_fingerprint(
    desired: DeploymentDesired, code_digest: str | None, model: ModelVersion | None
) -> str:
    return digest_of(
        {
            "deployment": desired.spec.written,
            "code": code_digest,
            "model": [model.name, model.version, model.digest] if model else None,
        }
    )


def reconcile_endpoint(
    desired: EndpointDesired,
    observed: EndpointObserved,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    def result(outcome: Outcome, actions: list[Action], **fields: Any) -> Result:
        fields["endpointName"] = desired.name  # what a finalizer deletes
        status = build_status(outcome, desired.generation, previous, now, **fields)
        requeue = PROGRESS_REQUEUE_S if outcome.phase is Phase.RECONCILING else None
        return Result(tuple(actions), status, outcome, requeue)

    if desired.suspend:
        return result(suspended(), [])
    if desired.problems:
        return result(Outcome(Phase.STALLED, "InvalidSpec", "; ".join(desired.problems)), [])
    owner = owner_of(desired.tags)
    if observed.endpoint is not None and made_for_another(observed.endpoint.tags, owner):
        theirs = owner_of(observed.endpoint.tags)
        outcome = owned_elsewhere(
            f"endpoint {desired.name}", desired.workspace, theirs, "spec.endpoint.name"
        )
        # no endpointName: the finalizer has nothing of ours to delete
        status = build_status(outcome, desired.generation, previous, now)
        return Result((), status, outcome)

    actions: list[Action] = []
    waiting: list[str] = []
    holding = False  # a deployed deployment lost its model: the split stays as it is
    failed: list[str] = []
    progressing: list[str] = []
    healthy: set[str] = set()
    report: dict[str, Any] = {}
    for dep in desired.deployments:
        state = observed.deployments.get(dep.name)
        model = observed.models.get(dep.name)
        code_digest = observed.code_digests.get(dep.name)
        if dep.spec.code_dir is not None and code_digest is None:
            failed.append(f"deployment {dep.name}: code folder {dep.spec.code_dir} does not exist")
            continue
        stale = False  # its written-out model has files the registered version lacks
        if dep.register is not None:
            local = observed.model_digests.get(dep.name)
            label = f"{dep.register.name}:{dep.register.version or 'next'}"
            if local is None:
                failed.append(
                    f"deployment {dep.name}: {dep.register_field}: {dep.register.path} does not "
                    "exist; fix the path or add the files"
                )
                continue
            stale = model is None or (dep.register.version is None and model.digest != local)
            if stale:
                # the registered version (if any) keeps serving until the new one is in
                actions.append(RegisterModel(desired.workspace, dep.register))
                progressing.append(f"deployment {dep.name}: registering model {label}")
            if model is None:
                holding = holding or state is not None
                report[dep.name] = {"state": "RegisteringModel", "model": label}
                continue
        if model is None:
            if state is None:
                waiting.append(f"model {dep.spec.model} (deployment {dep.name})")
                report[dep.name] = {"state": "WaitingForModel", "model": str(dep.spec.model)}
                continue
            # deployed, and its model went away: it serves what it was deployed with, its
            # share untouched, until the model is back (or the spec names another)
            holding = True
            waiting.append(
                f"model {dep.spec.model} (deployment {dep.name}, which keeps serving "
                f"{state.model or 'its deployed model'} and its traffic)"
            )
            report[dep.name] = {
                "state": str(state.provisioning_state),
                "model": state.model,
                "message": f"model {dep.spec.model} is not registered; serving what was deployed",
            }
            continue
        fp = deployment_fingerprint(dep, code_digest, model)
        current = state is not None and state.fingerprint == fp
        if state is not None:
            report[dep.name] = {"state": str(state.provisioning_state), "model": state.model}
            if state.message:
                report[dep.name]["message"] = state.message
        phase = state.provisioning_state if current and state is not None else None
        message = state.message if state is not None else ""
        if phase is ProvisioningState.FAILED:
            failed.append(f"deployment {dep.name}: {message}")
        elif phase is ProvisioningState.SUCCEEDED:
            healthy.add(dep.name)
        elif phase in (ProvisioningState.CREATING, ProvisioningState.UPDATING):
            progressing.append(f"deployment {dep.name}: {message or 'starting'}")
        elif not stale:  # deploy the model version it serves once that is registered
            kept = state.tags if current and state is not None else None
            deploy = replace(dep.spec, model=model.ref, fingerprint=fp, tags=kept or desired.tags)
            actions.append(CreateOrUpdateDeployment(deploy))
            progressing.append(f"deployment {dep.name}: deploying {model.name}:{model.version}")

    endpoint = observed.endpoint
    if holding and endpoint is not None:
        traffic, mirror = dict(endpoint.traffic), dict(endpoint.mirror_traffic)
    else:
        want = desired.spec
        traffic = renormalize({n: w if n in healthy else 0 for n, w in want.traffic.items()})
        mirror = {n: p if n in healthy else 0 for n, p in want.mirror_traffic.items()}
    if (
        endpoint is None
        or endpoint.provisioning_state is not ProvisioningState.SUCCEEDED
        or endpoint.auth_mode != desired.auth_mode
        or dict(endpoint.traffic) != traffic
        or dict(endpoint.mirror_traffic) != mirror
        or not desired.tags.keys() <= endpoint.tags.keys()
    ):
        tags = endpoint_tags(endpoint, desired.tags)
        spec = replace(desired.spec, traffic=traffic, mirror_traffic=mirror, tags=tags)
        # the endpoint (and its traffic) first: deployments attach to it, and traffic must
        # leave a deployment before it is deleted
        actions.insert(0, CreateOrUpdateEndpoint(spec))
    wanted = {d.name for d in desired.deployments}
    actions += [
        DeleteDeployment(desired.workspace, desired.name, name)
        for name in sorted(set(observed.deployments) - wanted)
        # while the split is held, one that still has a share stays until it can be moved
        if not (holding and traffic.get(name, 0) + mirror.get(name, 0) > 0)
    ]

    fields: dict[str, Any] = {
        "scoringUri": endpoint.scoring_uri if endpoint is not None else None,
        "traffic": traffic,
        "mirrorTraffic": mirror or None,
        "deployments": report,
    }
    if failed and not progressing:
        serving = ", ".join(sorted(healthy))
        tail = f"; serving from {serving}" if serving else "; nothing is serving"
        return result(
            Outcome(Phase.STALLED, "DeploymentFailed", "; ".join(failed) + tail), actions, **fields
        )
    # failures so far are shown while the rest come up; then they stall the endpoint
    if waiting:
        message = "; ".join(["waiting for " + "; ".join(waiting), *failed])
        return result(Outcome(Phase.RECONCILING, "DependencyNotReady", message), actions, **fields)
    if progressing or actions:
        message = "; ".join(failed + progressing) or "; ".join(a.describe() for a in actions)
        return result(Outcome(Phase.RECONCILING, "Progressing", message), actions, **fields)
    split = ", ".join(f"{n} {w}%" for n, w in sorted(traffic.items()))
    mirrored = ", ".join(f"{n} {p}%" for n, p in sorted(mirror.items()) if p)
    uri = endpoint.scoring_uri if endpoint is not None else ""
    message = f"serving at {uri}: {split or 'no traffic set'}"
    if mirrored:
        message += f" (mirroring {mirrored})"
    if endpoint is not None and endpoint.message:
        message += f"; {endpoint.message}"
    return result(Outcome(Phase.READY, "Serving", message), actions, **fields)


def finalize(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    """The object is gone: delete the endpoint and its deployments, unless told to retain it."""
    name = gone.status.get("endpointName")
    if gone.deletion_policy == "Retain" or not isinstance(name, str):
        return ()
    return (DeleteEndpoint(gone.workspace, name, owner=owner_of(gone.tags)),)


RECONCILER = driver.Reconciler("Endpoint", desired, observe, reconcile_endpoint, finalize)
