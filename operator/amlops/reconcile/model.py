"""Model: register the manifest's files as a model version, once.

Versions are immutable. With ``version`` pinned, the version is registered when missing and
left alone when present: if the files changed since, the object stays Ready and says how to
publish them (bump the version). Without ``version``, changed files become the next version.

A version is tagged with the commit its files are at when it is registered
(``amlops.core.provenance.files_commit``), not the one its object was last applied from: the
files can change under an unchanged manifest.

Every version the object registers is recorded in ``status.registeredVersions`` (``NAME:VERSION``)
and stays registered while the object lives: versions are immutable records that endpoints and
pipelines may still name, so editing ``version`` 1 -> 2 -> 1 keeps 1 and 2, both listed. Deleting
the object deletes every one of them (``deletionPolicy: Delete``) or keeps them all (``Retain``).

An object owns what carries its identity (the ``amlops-object`` tag, namespace/name, next to the
backend's ``amlops-owner``). A model whose versions another object registered (or made outside
amlops) is never adopted, changed or deleted: the object stalls with ``OwnedElsewhere``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from amlops.backends.base import Backend, ModelRef, ModelVersion, ModelVersionSpec
from amlops.core.provenance import DIRTY_SUFFIX, TAG_COMMIT, files_commit
from amlops.kinds.model import PATH_FIELD, ModelSpec, parse
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, DeleteOwned, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status, suspended
from amlops.reconcile.inputs import Gone, Inputs, accepted, owned_by, owned_elsewhere, owner_of
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
    # a version of the model that is not this object's (the pinned one or the latest)
    elsewhere: ModelVersion | None = None


@dataclass(frozen=True)
class RegisterModel:
    workspace: str
    spec: ModelVersionSpec

    def describe(self) -> str:
        return f"register model {self.spec.name}:{self.spec.version or 'next'}"

    def execute(self, backend: Backend) -> None:
        backend.create_or_update_model_version(self.workspace, current_provenance(self.spec))


def current_provenance(spec: ModelVersionSpec) -> ModelVersionSpec:
    """``spec`` tagged with the commit its files are at now, when Git knows it: the commit the
    object was applied from may predate them."""
    commit, given = files_commit(spec.path), spec.tags.get(TAG_COMMIT, "")
    if commit is None or given == commit:
        return spec
    head = commit.removesuffix(DIRTY_SUFFIX)
    if given == head + DIRTY_SUFFIX:  # the same commit, and its manifest is not committed yet
        return spec
    return replace(spec, tags={**spec.tags, TAG_COMMIT: commit})


@dataclass(frozen=True)
class DeleteModelVersion(DeleteOwned):
    workspace: str
    name: str
    version: str

    def describe(self) -> str:
        return f"delete model {self.name}:{self.version}"

    def ours(self, backend: Backend, owner: str) -> bool:
        current = backend.get_model_version(self.workspace, self.name, self.version)
        return current is not None and owner_of(current.tags) == owner

    def delete(self, backend: Backend) -> None:
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
    # whose the model is: the version asked for, or before a pinned version is added to a
    # name, the name's latest (read only then: a drift check costs no extra read)
    found = registered
    if found is None and spec.version is not None:
        found = backend.latest_model_version(desired.workspace, spec.name)
    elsewhere = found if found is not None and not owned_by(found.tags, spec.tags) else None
    return ModelObserved(digest_or_none(spec.path), registered, elsewhere)


def _entry(name: str, version: str) -> str:
    return f"{name}:{version}"


def _version_key(entry: str) -> tuple[str, int, str]:
    name, _, version = entry.rpartition(":")
    return (name, int(version) if version.isdigit() else -1, version)


def registered_versions(status: Mapping[str, Any] | None) -> list[str]:
    """The versions an object registered, as its status lists them (``NAME:VERSION``)."""
    listed = (status or {}).get("registeredVersions")
    if not isinstance(listed, list):
        return []
    return [v for v in listed if isinstance(v, str) and ":" in v]


def _tracked(previous: Mapping[str, Any] | None, more: Iterable[str]) -> list[str] | None:
    entries = {*registered_versions(previous), *more}
    return sorted(entries, key=_version_key) or None


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def reconcile_model(
    desired: ModelDesired,
    observed: ModelObserved,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    spec = desired.spec
    elsewhere = observed.elsewhere
    registered = observed.registered if elsewhere is None else None
    fields: dict[str, Any] = {}
    if registered is not None:
        fields = {
            "modelName": registered.name,
            "version": registered.version,
            "assetId": registered.asset_id,
            "sha256": registered.digest.removeprefix("sha256:"),
        }
    # every version it registered stays listed, whatever it asks for now (what its finalizer
    # deletes); one found registered with its identity is one it registered
    mine = [_entry(registered.name, registered.version)] if registered is not None else []
    fields["registeredVersions"] = _tracked(previous, mine)

    def result(outcome: Outcome, *actions: Action) -> Result:
        status = build_status(outcome, desired.generation, previous, now, **fields)
        return Result(tuple(actions), status, outcome)

    if desired.suspend:
        return result(suspended())
    if elsewhere is not None:
        model = f"model {elsewhere.name}:{elsewhere.version}"
        owner = owner_of(elsewhere.tags)
        return result(owned_elsewhere(model, desired.workspace, owner, "spec.model.name"))
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
    """The object is gone: delete every version it registered, unless told to retain them;
    each only while it still carries the object's identity."""
    if gone.deletion_policy == "Retain":
        return ()
    name, version = gone.status.get("modelName"), gone.status.get("version")
    current = [_entry(name, version)] if isinstance(name, str) and isinstance(version, str) else []
    owner = owner_of(gone.tags)
    deletes: list[Action] = []
    for entry in _tracked(gone.status, current) or []:
        model, _, number = entry.rpartition(":")
        deletes.append(DeleteModelVersion(gone.workspace, model, number, owner=owner))
    return tuple(deletes)


RECONCILER = driver.Reconciler("Model", desired, observe, reconcile_model, finalize)
