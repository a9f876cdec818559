"""Whose assets are whose, on the local backend and through the Model reconciler: an asset made
for one object (``amlops-object``) or owner (``amlops-owner``) is never adopted or deleted for
another (issue 13, D6); every version an object registered stays recorded and is deleted with
it (D8); a new version is tagged with the commit its files are at (D7)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import TAG_OWNER, EndpointSpec, ModelVersionSpec
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.models import OwnershipError
from amlops.core.provenance import TAG_COMMIT, TAG_OBJECT
from amlops.core.source import FieldPath, Position
from amlops.reconcile import driver, endpoint, model
from amlops.reconcile.conditions import Phase
from amlops.reconcile.inputs import Gone, Inputs, Source
from tests.gitserver import git

WS = "ws"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class _Line1:
    def locate(self, path: FieldPath, /) -> Position:
        return Position("m.yaml", 1, 1)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "models" / "m"
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("v1\n")
    return folder


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[LocalBackend]:
    """The local backend as the operator opens it: with an owner identity."""
    b = LocalBackend(tmp_path / "state", owner="amlops-operator:amlops")
    b.start()
    yield b
    b.close()


def spec(files: Path, version: str | None = "1", obj: str | None = "team/m") -> ModelVersionSpec:
    tags = {TAG_OBJECT: obj} if obj is not None else {}
    return ModelVersionSpec("m", version, files, tags=tags)


def inputs(files: Path, obj: str, version: str | None, **tags: str) -> Inputs:
    model_spec: dict[str, Any] = {"name": "m", "path": files.name}
    if version is not None:
        model_spec["version"] = version
    source = Source(_Line1(), lambda path, value: files.parent / value)
    return Inputs(
        WS, obj.split("/")[1], {"model": model_spec}, 1, source, {TAG_OBJECT: obj, **tags}
    )


def reconcile(
    backend: LocalBackend, want: Inputs, previous: Mapping[str, Any] | None = None
) -> Any:
    return model.RECONCILER.reconcile(backend, model.desired(want), previous)


def finalize(backend: LocalBackend, gone: Gone) -> str | None:
    return driver.finalize(backend, model.finalize(backend, gone))


def versions(backend: LocalBackend) -> list[str]:
    return [v.version for v in backend.list_model_versions(WS, "m")]


# -- the backend -----------------------------------------------------------------------------


def test_the_local_backend_tags_its_owner_and_refuses_another_owners_version(
    tmp_path: Path, owned: LocalBackend, files: Path
) -> None:
    first = owned.create_or_update_model_version(WS, spec(files))
    assert first.tags[TAG_OWNER] == "amlops-operator:amlops"
    assert first.tags[TAG_OBJECT] == "team/m"
    owned.close()

    other = LocalBackend(tmp_path / "state", owner="amlops-up:laptop")
    other.start()
    try:
        with pytest.raises(OwnershipError) as err:
            other.create_or_update_model_version(WS, spec(files))  # the same files: no reuse
        assert "amlops-operator:amlops" in str(err.value)
        with pytest.raises(OwnershipError):
            other.create_or_update_model_version(WS, spec(files, version=None))  # no next one
        with pytest.raises(OwnershipError):
            other.delete_model_version(WS, "m", "1")
        assert versions(other) == ["1"]
    finally:
        other.close()


@pytest.mark.parametrize("version", ["1", "2", None])
def test_the_local_backend_refuses_another_objects_model(
    owned: LocalBackend, files: Path, version: str | None
) -> None:
    owned.create_or_update_model_version(WS, spec(files, obj="dev/m"))
    (files / "weights.txt").write_text("t1's own files\n")
    # the version itself, a new version under its name, or the next one: all refused
    with pytest.raises(OwnershipError) as err:
        owned.create_or_update_model_version(WS, spec(files, version=version, obj="t1/m"))
    assert "dev/m" in str(err.value)
    assert versions(owned) == ["1"]
    # the object it was made for carries on
    assert owned.create_or_update_model_version(WS, spec(files, "2", obj="dev/m")).version == "2"


# -- the Model reconciler (D6) ---------------------------------------------------------------


def test_a_model_of_another_object_is_not_adopted_nor_deleted(
    owned: LocalBackend, files: Path
) -> None:
    dev = reconcile(owned, inputs(files, "dev/m", "1"))
    assert dev.outcome.reason == "Registered"

    for version in ("1", "2", None):  # the same version, another one, or the name's latest
        t1 = reconcile(owned, inputs(files, "t1/m", version))
        assert t1.outcome.phase is Phase.STALLED and t1.outcome.reason == "OwnedElsewhere"
        assert "dev/m" in t1.outcome.message and t1.actions == ()
        assert "modelName" not in t1.status and "registeredVersions" not in t1.status

    # t1 deleted: nothing of its own to delete, not even with a status naming dev's version
    forged = {"modelName": "m", "version": "1", "registeredVersions": ["m:1"]}
    assert finalize(owned, Gone(WS, "m", forged, "Delete", {TAG_OBJECT: "t1/m"})) is None
    assert versions(owned) == ["1"]
    # dev deleted: its version goes
    assert finalize(owned, Gone(WS, "m", dev.status, "Delete", {TAG_OBJECT: "dev/m"})) is None
    assert versions(owned) == []


# -- versions an object no longer asks for (D8) ----------------------------------------------


@pytest.mark.parametrize(("policy", "left"), [("Delete", []), ("Retain", ["1", "2", "7"])])
def test_every_version_an_object_registered_is_listed_and_goes_with_it(
    owned: LocalBackend, files: Path, policy: str, left: list[str]
) -> None:
    status: Mapping[str, Any] | None = None
    for version in ("1", "2", "1", "7"):
        (files / "weights.txt").write_text(f"files of {version}\n")
        result = reconcile(owned, inputs(files, "team/m", version), status)
        assert result.status["version"] == version, result.outcome
        status = result.status
    assert status is not None
    assert status["registeredVersions"] == ["m:1", "m:2", "m:7"]
    assert versions(owned) == ["1", "2", "7"]  # kept: immutable records, maybe still served
    assert all(v.tags[TAG_OBJECT] == "team/m" for v in owned.list_model_versions(WS, "m"))

    assert finalize(owned, Gone(WS, "m", status, policy, {TAG_OBJECT: "team/m"})) is None
    assert versions(owned) == left


def test_a_version_deleted_by_hand_meanwhile_does_not_block_the_finalizer(
    owned: LocalBackend, files: Path
) -> None:
    first = reconcile(owned, inputs(files, "team/m", "1"))
    second = reconcile(owned, inputs(files, "team/m", "2"), first.status)
    owned.delete_model_version(WS, "m", "1")
    assert finalize(owned, Gone(WS, "m", second.status, "Delete", {TAG_OBJECT: "team/m"})) is None
    assert versions(owned) == []


# -- provenance of a new version (D7) --------------------------------------------------------


def test_a_new_version_is_tagged_with_the_commit_its_files_are_at(
    owned: LocalBackend, files: Path
) -> None:
    repo = files.parent.parent
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c1")
    c1 = git(repo, "rev-parse", "HEAD")
    # the object as applied at c1 (its annotation), never re-applied: the manifest is unchanged
    want = inputs(files, "team/m", None, **{TAG_COMMIT: c1})
    first = reconcile(owned, want)
    assert owned.get_model_version(WS, "m", "1").tags[TAG_COMMIT] == c1  # type: ignore[union-attr]

    (files / "weights.txt").write_text("v2\n")
    git(repo, "commit", "-qam", "c2: new weights only")
    c2 = git(repo, "rev-parse", "HEAD")
    second = reconcile(owned, want, first.status)
    assert second.status["version"] == "2"
    assert owned.get_model_version(WS, "m", "2").tags[TAG_COMMIT] == c2  # type: ignore[union-attr]

    (files / "weights.txt").write_text("v3, not committed\n")
    reconcile(owned, want, second.status)
    third = owned.get_model_version(WS, "m", "3")
    assert third is not None and third.tags[TAG_COMMIT] == f"{c2}-dirty"
    # the versions registered before keep the commits they were made from
    assert owned.get_model_version(WS, "m", "1").tags[TAG_COMMIT] == c1  # type: ignore[union-attr]


# -- endpoints (D6) ----------------------------------------------------------------------------


def test_an_endpoint_of_another_object_is_not_adopted_nor_deleted(owned: LocalBackend) -> None:
    dev = EndpointSpec(WS, "shared-ep", "key", {}, tags={TAG_OBJECT: "dev/e"})
    owned.create_or_update_endpoint(dev)
    observed = endpoint.EndpointObserved(owned.get_endpoint(WS, "shared-ep"), {}, {}, {})
    spec = {"endpoint": {"name": "shared-ep", "auth_mode": "key"}, "deployments": []}
    source = Source(_Line1(), lambda path, value: Path(value))
    want = endpoint.desired(Inputs(WS, "e", spec, 1, source, {TAG_OBJECT: "t1/e"}))

    result = endpoint.reconcile_endpoint(want, observed, None, NOW)
    assert result.outcome.reason == "OwnedElsewhere" and result.actions == ()
    assert "dev/e" in result.outcome.message and "endpointName" not in result.status

    forged = {"endpointName": "shared-ep"}
    actions = endpoint.finalize(owned, Gone(WS, "e", forged, "Delete", {TAG_OBJECT: "t1/e"}))
    assert driver.finalize(owned, actions) is None
    assert owned.get_endpoint(WS, "shared-ep") is not None
    actions = endpoint.finalize(owned, Gone(WS, "e", forged, "Delete", {TAG_OBJECT: "dev/e"}))
    assert driver.finalize(owned, actions) is None
    assert owned.get_endpoint(WS, "shared-ep") is None
