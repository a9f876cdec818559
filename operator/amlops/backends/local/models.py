"""Registering model versions: files into the artifact store, one catalog row per version.

Model versions are immutable, as in Azure ML: registering the same files under an existing
version is a no-op, and different files under an existing version are refused (the manifest
has to ask for a new version). Without a version, the files get the next integer version,
unless the latest version already holds exactly these files.

Ownership, as on Azure ML (``amlops.backends.azureml``): a version registered for a driver with
an owner identity carries it (``amlops-owner``), next to the object it was made for
(``amlops-object``). A registration for one owner or object never reuses, or adds a version
to, a model whose versions carry another (``OwnershipError``); a row without an owner tag
predates them, and the state directory is one driver's alone, so it stays that driver's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from amlops.backends.base import TAG_OWNER, BackendError, ModelVersion, ModelVersionSpec
from amlops.backends.local.cas import ArtifactStore
from amlops.backends.local.catalog import AssetCatalog
from amlops.backends.local.db import Transaction
from amlops.core.files import PathRefusedError
from amlops.core.provenance import TAG_OBJECT


class VersionConflictError(BackendError):
    """An existing version would get different files."""


class OwnershipError(BackendError):
    """The model belongs to another owner or object: never adopted, changed or deleted."""


def check_owner(version: ModelVersion, owner: str, wanted: Mapping[str, str]) -> None:
    """Raise OwnershipError unless ``version`` is for ``owner`` (when it says whose it is) and
    for the object the tags ``wanted`` name (``amlops-object``, "" for none)."""
    theirs = version.tags.get(TAG_OWNER)
    if owner and theirs is not None and theirs != owner:
        by = f"owner {theirs!r}"
    elif version.tags.get(TAG_OBJECT, "") != wanted.get(TAG_OBJECT, ""):
        by = f"object {version.tags.get(TAG_OBJECT) or '(none)'}"
    else:
        return
    raise OwnershipError(
        f"model {version.name}:{version.version} belongs to {by}, not to "
        f"{wanted.get(TAG_OBJECT) or owner or 'this driver'}: amlops does not adopt, change or "
        "delete it"
    )


@dataclass(frozen=True)
class Prepared:
    """A registration whose files are stored and materialised; only the catalog row is left."""

    version: ModelVersion
    location: str  # relative to the state directory
    new: bool


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry:
    def __init__(self, catalog: AssetCatalog, store: ArtifactStore, root: Path) -> None:
        self.catalog = catalog
        self.store = store
        self.root = root
        # two registrations of one name must not both pick the same next version; the runner
        # holds it from preparing a run's outputs to committing them
        self.lock = threading.RLock()

    def get(self, workspace: str, name: str, version: str) -> ModelVersion | None:
        return self.catalog.get_model_version(workspace, name, version, self.root)

    def latest(self, workspace: str, name: str) -> ModelVersion | None:
        versions = self.catalog.list_model_versions(workspace, name, self.root)
        return versions[-1] if versions else None

    def prepare(
        self,
        workspace: str,
        spec: ModelVersionSpec,
        *,
        source_root: Path | None = None,
        owner: str | None = None,
    ) -> Prepared:
        """Store the files and pick the version; raise VersionConflictError, OwnershipError or
        BackendError. ``source_root``: the files were named by a manifest and must stay inside
        it. ``owner``: the registering driver's identity (``check_owner``); None: not checked
        (a pipeline run's outputs, registered under the run's tags)."""
        if not spec.path.exists():
            raise BackendError(f"model path {spec.path} does not exist")
        try:
            digest = self.store.put_tree(spec.path, root=source_root)
        except PathRefusedError as exc:
            raise BackendError(f"model path: {exc}") from exc
        except OSError as exc:
            raise BackendError(f"cannot store model files from {spec.path}: {exc}") from exc
        with self.lock:
            # each read once: the owner check and the choice of version share them
            existing: ModelVersion | None = None
            latest: ModelVersion | None = None
            if spec.version is not None:
                existing = self.get(workspace, spec.name, spec.version)
            if spec.version is None or owner is not None:
                latest = self.latest(workspace, spec.name)
            if owner is not None:
                for found in (existing, latest):
                    if found is not None:
                        check_owner(found, owner, spec.tags)
            if spec.version is not None:
                if existing is not None:
                    if existing.digest != digest:
                        raise VersionConflictError(
                            f"model {spec.name}:{spec.version} already exists with other files "
                            f"({_short(existing.digest)}, now {_short(digest)}); versions are "
                            "immutable: give the new files a new version"
                        )
                    return Prepared(existing, _relative(existing.location, self.root), new=False)
                version = spec.version
            else:
                if latest is not None and latest.digest == digest:
                    return Prepared(latest, _relative(latest.location, self.root), new=False)
                version = self.catalog.next_model_version(workspace, spec.name)
        hexdigest = digest.removeprefix("sha256:")
        # Azure ML's layout, which azmlinfsrv reads model ids from: AZUREML_MODEL_DIR is
        # .../<name>/<version>, and a folder-registered model sits one level down, in
        # <version>/<folder>. The digest above it keeps a re-registered version (after a
        # delete, or a crash before the catalog write) from reusing a stale folder.
        location = f"models/{workspace}/{hexdigest[:16]}/{spec.name}/{version}"
        inner = spec.path.name if spec.path.is_dir() else ""
        target = self.root / location / inner if inner else self.root / location
        self.store.materialize(digest, target)
        record = ModelVersion(
            workspace=workspace,
            name=spec.name,
            version=version,
            asset_id="",
            digest=digest,
            type=spec.type,
            description=spec.description,
            tags=dict(spec.tags),
            created_at=now_iso(),
            location=str(self.root / location),
        )
        return Prepared(record, location, new=True)

    def commit(self, tx: Transaction, prepared: Prepared) -> None:
        if prepared.new:
            self.catalog.insert_model_version(tx, prepared.version, prepared.location)

    def register(
        self,
        workspace: str,
        spec: ModelVersionSpec,
        *,
        source_root: Path | None = None,
        owner: str | None = None,
    ) -> ModelVersion:
        """``prepare`` and write the row in a transaction of its own (``commit`` writes it in
        the caller's), under ``lock`` throughout so that no other registration takes the same
        next version; returns the version as the catalog holds it."""
        with self.lock:
            prepared = self.prepare(workspace, spec, source_root=source_root, owner=owner)
            version = prepared.version
            if prepared.new:
                with self.catalog.transaction() as tx:
                    self.commit(tx, prepared)
            registered = self.get(version.workspace, version.name, version.version)
        if registered is None:  # pragma: no cover - the row was written just above
            raise BackendError(f"model {version.name}:{version.version} vanished")
        return registered

    def delete(self, workspace: str, name: str, version: str, *, owner: str = "") -> None:
        """``owner``: the deleting driver's identity; a version tagged with another owner is
        refused (the object it was made for is the reconcile core's to check)."""
        existing = self.get(workspace, name, version)
        if existing is None:
            return
        theirs = existing.tags.get(TAG_OWNER)
        if owner and theirs is not None and theirs != owner:
            raise OwnershipError(
                f"model {name}:{version} belongs to owner {theirs!r}, not {owner!r}: amlops "
                "does not delete it"
            )
        with self.catalog.transaction() as tx:
            self.catalog.delete_model_version(tx, workspace, name, version)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _relative(location: str, root: Path) -> str:
    return str(Path(location).relative_to(root))
