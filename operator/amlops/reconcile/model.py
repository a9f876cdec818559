"""Model: register the manifest's files as a model version, once.

Versions are immutable. With ``version`` pinned, the version is registered when missing and
left alone when present: if the files changed since, the object stays Ready and says how to
publish them (bump the version). Without ``version``, changed files become the next version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from amlops.backends.base import Backend, ModelRef, ModelVersion, ModelVersionSpec
from amlops.kinds.model import PATH_FIELD, ModelSpec, parse
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status, suspended
from amlops.reconcile.inputs import Gone, Inputs, accepted
from amlops.reconcile.observe import digest_or_none, model_version


@dataclass(frozen=True)
class ModelDesired:
    workspace: str
    name: str  # the object's name (metadata.name)
    generation: int
    spec: ModelVersionSpec  # path absolute
    path_field: str  # where spec.model.path is written, for messages
    suspend: bool = False
    deletion_policy: str = "Delete"


@dataclass(frozen=True)
class ModelObserved:
    local_digest: str | None  # digest of the files at spec.path; None when they are missing
    registered: ModelVersion | None  # the pinned version, or the latest when unpinned


@dataclass(frozen=True)
class RegisterModel:
    workspace: str
    spec: ModelVersionSpec

    def describe(self) -> str:
        return f"register model {self.spec.name}:{self.spec.version or 'next'}"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_model_version(self.workspace, self.spec)


@dataclass(frozen=True)
class DeleteModelVersion:
    workspace: str
    name: str
    version: str

    def describe(self) -> str:
        return f"delete model {self.name}:{self.version}"

    def execute(self, backend: Backend) -> None:
        backend.delete_model_version(self.workspace, self.name, self.version)


def desired_model(inputs: Inputs, model: ModelSpec) -> ModelDesired:
    return ModelDesired(
        workspace=inputs.workspace,
        name=inputs.name,
        generation=inputs.generation,
        spec=ModelVersionSpec(
            name=model.name,
            version=model.version,
            path=inputs.source.resolve(PATH_FIELD, model.path),
            type=model.type,
            description=model.description,
            # provenance last: a model's own tags cannot claim another commit
            tags={**model.tags, **inputs.tags},
        ),
        path_field=inputs.source.field(PATH_FIELD),
        suspend=model.lifecycle.suspend,
        deletion_policy=model.lifecycle.deletion_policy,
    )


def desired(inputs: Inputs) -> ModelDesired:
    """The spec parsed once (``amlops.kinds.model``); SpecError when it cannot be read."""
    return desired_model(inputs, accepted(parse(inputs.spec, inputs.source.locator)))


def observe(backend: Backend, desired: ModelDesired) -> ModelObserved:
    spec = desired.spec
    registered = model_version(backend, desired.workspace, ModelRef(spec.name, spec.version))
    return ModelObserved(digest_or_none(spec.path), registered)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def reconcile_model(
    desired: ModelDesired,
    observed: ModelObserved,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    spec = desired.spec
    registered = observed.registered
    fields: dict[str, Any] = {}
    if registered is not None:
        fields = {
            "modelName": registered.name,
            "version": registered.version,
            "assetId": registered.asset_id,
            "sha256": registered.digest.removeprefix("sha256:"),
        }

    def result(outcome: Outcome, *actions: Action) -> Result:
        status = build_status(outcome, desired.generation, previous, now, **fields)
        return Result(tuple(actions), status, outcome)

    if desired.suspend:
        return result(suspended())
    if observed.local_digest is None:
        return result(
            Outcome(
                Phase.STALLED,
                "ArtifactsNotFound",
                f"{desired.path_field}: {spec.path} does not exist; fix the path or add the files",
            )
        )
    label = f"{spec.name}:{spec.version}" if spec.version else spec.name
    if registered is None:
        return result(
            Outcome(Phase.RECONCILING, "Registering", f"registering {label}"),
            RegisterModel(desired.workspace, spec),
        )
    if registered.digest == observed.local_digest:
        return result(
            Outcome(
                Phase.READY,
                "Registered",
                f"{registered.name}:{registered.version} registered "
                f"(sha256 {_short(registered.digest)})",
            )
        )
    if spec.version is None:
        return result(
            Outcome(
                Phase.RECONCILING,
                "Registering",
                f"the files changed since {registered.name}:{registered.version}; "
                "registering them as the next version",
            ),
            RegisterModel(desired.workspace, spec),
        )
    return result(
        Outcome(
            Phase.READY,
            "NewFilesNotRegistered",
            f"{label} stays as registered (sha256 {_short(registered.digest)}); the files at "
            f"{desired.path_field} changed (sha256 {_short(observed.local_digest)}): versions are "
            "immutable, bump spec.model.version to register them",
        )
    )


def finalize(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    """The object is gone: delete the version it registered, unless told to retain it."""
    name, version = gone.status.get("modelName"), gone.status.get("version")
    if (
        gone.deletion_policy == "Retain"
        or not isinstance(name, str)
        or not isinstance(version, str)
    ):
        return ()
    return (DeleteModelVersion(gone.workspace, name, version),)


RECONCILER = driver.Reconciler("Model", desired, observe, reconcile_model, finalize)
