"""A custom resource as the reconcile core needs it: identity, spec, where its files are.

Relative paths in a spec (``spec.model.path``, ``code:``) mean what they mean in Git: relative
to the manifest file. ``amlops apply`` stamps each object with the manifest's path inside the
repository (``amlops.io/source-file``) and the commit (``amlops.io/git-commit``); the operator
resolves paths against ``AMLOPS_SOURCE_ROOT``, the checkout mounted into its pod (a git-sync
volume, like a Flux source artifact). An object without the annotation (``kubectl apply``)
resolves against the root itself. A path that leaves the root (after symlinks), names a
device or pipe, or a folder over the size limits, is refused by the core's containment rule: a
custom resource must not make the operator read, and register, files of its own pod.

An object a GitSource applied carries ``amlops.io/source`` (the GitSource's ``ns/name``) and
``amlops.io/revision`` (the commit): when the source is of the object's own namespace and the
object carries its labels too, and the revision is a full commit id (anything else is no
source: annotations are the object writer's to set), its paths resolve against that source's
artifact of that commit (``amlops.gitops.artifacts``, in the state directory), so the manifests
mean the same delivered by a GitSource as in Git. The GitSource re-applies an object whose
files changed (their digest is part of what it applies), so when the object's own artifact has
been collected, the source's last applied artifact holds the same files and is used instead. An
object without a source or a manifest path (``kubectl apply -f`` of a manifest whose paths are
relative to its file, ``../assets/m``) that names files outside the root is told so
(``ArtifactsNotFound``, "no source: ..."): name a datastore URI or a registered asset, or
deliver it through a GitSource; files missing inside the root are the reconciler's
``ArtifactsNotFound``, as in ``amlops up``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Self

from amlops import API_GROUP, API_VERSION
from amlops.core.files import RULE_OUTSIDE_ROOT, PathRefusedError, admit, local_target
from amlops.core.findings import format_path
from amlops.core.limits import Limits
from amlops.core.locator import ObjectLocator, located_document
from amlops.core.manifests import Manifest, Segment
from amlops.core.provenance import TAG_COMMIT, TAG_MANIFEST, TAG_OBJECT
from amlops.core.schemas import SchemaSet, load_schemas
from amlops.core.source import FieldPath
from amlops.gitops.apply import GIT_COMMIT as ANNOTATION_GIT_COMMIT  # `amlops apply`'s commit
from amlops.gitops.apply import REVISION as ANNOTATION_REVISION  # the commit it came from
from amlops.gitops.apply import SOURCE as ANNOTATION_SOURCE  # the GitSource (ns/name)
from amlops.gitops.apply import SOURCE_FILE as ANNOTATION_SOURCE_FILE  # its manifest's path
from amlops.gitops.apply import SOURCE_NAME, SOURCE_NAMESPACE  # the GitSource's labels
from amlops.gitops.artifacts import artifact_dir
from amlops.gitops.fetch import source_dir_name
from amlops.kinds.base import Lifecycle
from amlops.kinds.git_source import is_commit_id
from amlops.reconcile.inputs import Gone, Inputs, Source
from amlops.reconcile.inputs import SpecError as SpecError  # raised by source_of's resolve

ANNOTATION_RUN_REQUESTED = f"{API_GROUP}/run-requested-at"
ARTIFACTS_NOT_FOUND = "ArtifactsNotFound"
NO_SOURCE = "no source: name a datastore URI or registered asset, or deliver it through a GitSource"


class ArtifactsNotFound(SpecError):
    """The files a spec names are not where it says: a condition of their own, since the fix
    is to deliver them (a GitSource), not to edit the field."""

    reason = ARTIFACTS_NOT_FOUND


@dataclass(frozen=True)
class Applied:
    """What a GitSource last applied, as its handler records it in the state directory for
    the objects' handlers: the commit, and the repository folder its artifacts hold."""

    commit: str
    path: str  # spec.path ("." for the whole repository)

    @staticmethod
    def _file(state_dir: Path, source: str) -> Path:
        return state_dir / "sources" / source_dir_name(source) / "applied.json"

    def write(self, state_dir: Path, source: str) -> None:
        file = self._file(state_dir, source)
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"commit": self.commit, "path": self.path}), encoding="utf-8")
        os.replace(tmp, file)  # a reader sees the old record or the new one

    @classmethod
    def read(cls, state_dir: Path, source: str) -> Applied | None:
        try:
            data = json.loads(cls._file(state_dir, source).read_text(encoding="utf-8"))
            return cls(str(data["commit"]), str(data["path"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class CustomResource:
    """What every handler reads of a custom resource's body: its identity, generation, spec
    and metadata. A kind's handlers add how they read its status."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    # optional in Kubernetes metadata: an object may carry neither
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Self:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 1),
            spec=body.get("spec") or {},
            annotations=dict(meta.get("annotations") or {}),
            labels=dict(meta.get("labels") or {}),
        )

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resource(CustomResource):
    """An object of an operator kind (``amlops.reconcile.registry``), as its handlers read it."""

    kind: str = ""
    status: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Self:
        status = body.get("status")
        return replace(
            super().of(body),
            kind=str(body.get("kind", "")),
            status=dict(status) if isinstance(status, Mapping) else None,
        )

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.id}"

    @cached_property
    def manifest(self) -> Manifest:
        """The object as the core sees a manifest, so the core's answers (its workspace, its
        schema findings) are the operator's too. No text behind it: a finding names the
        object and the field, not a line."""
        body: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": dict(self.spec),
        }
        doc = located_document(body, ObjectLocator(self.ref))
        return Manifest(self.kind, self.name, body, [Segment((), doc)])

    @property
    def workspace(self) -> str:
        return self.manifest.workspace or ""

    @cached_property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle.of(self.spec)

    @property
    def suspended(self) -> bool:
        return self.lifecycle.suspend

    @property
    def deletion_policy(self) -> str:
        return self.lifecycle.deletion_policy

    @property
    def source_file(self) -> str | None:
        return self.annotations.get(ANNOTATION_SOURCE_FILE) or None

    @property
    def source(self) -> str | None:
        """The GitSource (``ns/name``) that applied the object, if one did: a source of the
        object's own namespace, named by its labels as well (so a Model in namespace B cannot
        read the files of A's source by naming it). Anything else is no source."""
        named = self.annotations.get(ANNOTATION_SOURCE) or ""
        namespace, _, name = named.partition("/")
        if not name or namespace != self.namespace:
            return None
        labels = (self.labels.get(SOURCE_NAMESPACE), self.labels.get(SOURCE_NAME))
        return named if labels == (namespace, name) else None

    @property
    def revision(self) -> str | None:
        """The commit the object came from: a full commit id, or None."""
        value = self.annotations.get(ANNOTATION_REVISION) or ""
        return value if is_commit_id(value) else None

    def inputs(self, source: Source) -> Inputs:
        """What the reconcile core reads of the object (``amlops.reconcile.registry``)."""
        requested = self.annotations.get(ANNOTATION_RUN_REQUESTED)
        return Inputs(
            self.workspace, self.name, self.spec, self.generation, source, self.tags(), requested
        )

    def gone(self) -> Gone:
        """The object as its finalizer sees it: the status its last reconcile wrote."""
        return Gone(self.workspace, self.name, self.status or {}, self.deletion_policy, self.tags())

    def tags(self) -> dict[str, str]:
        """What every asset made for this object is tagged with (DESIGN: the Git commit and
        manifest path that made it), under the keys ``amlops up`` and the Pulumi program use."""
        tags = {TAG_OBJECT: self.id}
        # a GitSource's revision is the commit the object (and so its files) came from
        commit = ANNOTATION_REVISION if self.revision else ANNOTATION_GIT_COMMIT
        for tag, annotation in (
            (TAG_COMMIT, commit),
            (TAG_MANIFEST, ANNOTATION_SOURCE_FILE),
        ):
            if self.annotations.get(annotation):
                tags[tag] = self.annotations[annotation]
        return tags


def artifact_of(obj: Resource, state_dir: Path) -> tuple[Path, str]:
    """The artifact an object from a GitSource resolves against, and the repository folder it
    holds; ``ArtifactsNotFound`` when neither the object's revision nor the source's last
    applied one is there (a state directory that was lost: the source's next sync rebuilds)."""
    source, revision = obj.source or "", obj.revision or ""
    applied = Applied.read(state_dir, source)
    for commit in (revision, applied.commit if applied else ""):
        if (found := artifact_dir(state_dir, source, commit)) is not None:
            return found, applied.path if applied else "."
    raise ArtifactsNotFound(
        f"the artifact of GitSource {source} at {revision or 'its revision'} is not in the "
        "operator's state directory yet; it is rebuilt at the source's next sync"
    )


def source_of(
    obj: Resource, root: Path, limits: Limits | None = None, state_dir: Path | None = None
) -> Source:
    """Paths resolve against the manifest's folder inside ``root`` (the operator's
    ``source_root``), or inside its GitSource's artifact (``state_dir``), and must pass the
    core's containment rule (``amlops.core.files``): inside the root after symlinks, a file or
    a folder, within ``limits``."""
    file = obj.source_file
    sourced = obj.source is not None and state_dir is not None
    if sourced:
        assert state_dir is not None
        artifact, folder = artifact_of(obj, state_dir)
        top = artifact.resolve()
        # source-file is the manifest's path in the repository; the artifact holds ``folder``
        relative = PurePosixPath(file or ".").parent
        if folder not in ("", "."):
            try:
                relative = relative.relative_to(folder)
            except ValueError:
                relative = PurePosixPath(".")
        base = top / relative
    else:
        top = root.resolve()
        base = top / PurePosixPath(file).parent if file else top

    def resolve(path: FieldPath, value: str) -> Path:
        target = base / local_target(value)
        what = f"{format_path(path)}: {value!r}"
        try:
            return admit(top, target, limits, what=what)
        except PathRefusedError as exc:
            if exc.rule == RULE_OUTSIDE_ROOT and not sourced and not file:
                # `../assets` of a manifest applied with kubectl: relative to nothing here
                raise ArtifactsNotFound(f"{exc} ({NO_SOURCE})") from exc
            raise SpecError(str(exc)) from exc

    # no line to point at: a message names the manifest's file (when known) and the field
    return Source(ObjectLocator(file or ""), resolve)


def schema_problems(obj: Resource, schemas: SchemaSet | None = None) -> list[str]:
    """Re-check the spec against the kind's JSON Schema: the CRD's structural schema cannot say
    everything (``oneOf``, ``additionalProperties: false`` inside embedded parts), so a spec
    the API server let through can still be invalid. Each problem names its field."""
    checks = schemas or load_schemas()
    findings = checks.check(obj.manifest)
    return [f"{f.field}: {f.message}" if f.field else f.message for f in findings]
