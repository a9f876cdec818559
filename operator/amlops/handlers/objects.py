"""A custom resource as the reconcile core needs it: identity, spec, where its files are.

Relative paths in a spec (``spec.model.path``, ``code:``) mean what they mean in Git: relative
to the manifest file. ``amlops apply`` stamps each object with the manifest's path inside the
repository (``amlops.io/source-file``) and the commit (``amlops.io/git-commit``); the operator
resolves paths against ``AMLOPS_SOURCE_ROOT``, the checkout mounted into its pod (a git-sync
volume, like a Flux source artifact). An object without the annotation (``kubectl apply``)
resolves against the root itself. A path that leaves the root (after symlinks), names a
device or pipe, or a folder over the size limits, is refused by the core's containment rule: a
custom resource must not make the operator read, and register, files of its own pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from amlops import API_GROUP, API_VERSION
from amlops.core.files import PathRefusedError, admit, local_target
from amlops.core.findings import format_path
from amlops.core.limits import Limits
from amlops.core.locator import ObjectLocator, located_document
from amlops.core.manifests import Manifest, Segment
from amlops.core.provenance import TAG_COMMIT, TAG_MANIFEST, TAG_OBJECT
from amlops.core.schemas import SchemaSet, load_schemas
from amlops.core.source import FieldPath
from amlops.kinds.base import Lifecycle
from amlops.reconcile.inputs import Gone, Inputs, Source
from amlops.reconcile.inputs import SpecError as SpecError  # raised by source_of's resolve

ANNOTATION_SOURCE_FILE = f"{API_GROUP}/source-file"
ANNOTATION_GIT_COMMIT = f"{API_GROUP}/git-commit"
ANNOTATION_RUN_REQUESTED = f"{API_GROUP}/run-requested-at"


@dataclass(frozen=True)
class Resource:
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] | None
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Resource:
        meta = body.get("metadata") or {}
        status = body.get("status")
        return cls(
            kind=str(body.get("kind", "")),
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 1),
            spec=body.get("spec") or {},
            status=dict(status) if isinstance(status, Mapping) else None,
            annotations=dict(meta.get("annotations") or {}),
        )

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

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

    def inputs(self, source: Source) -> Inputs:
        """What the reconcile core reads of the object (``amlops.reconcile.registry``)."""
        requested = self.annotations.get(ANNOTATION_RUN_REQUESTED)
        return Inputs(
            self.workspace, self.name, self.spec, self.generation, source, self.tags(), requested
        )

    def gone(self) -> Gone:
        """The object as its finalizer sees it: the status its last reconcile wrote."""
        return Gone(self.workspace, self.name, self.status or {}, self.deletion_policy)

    def tags(self) -> dict[str, str]:
        """What every asset made for this object is tagged with (DESIGN: the Git commit and
        manifest path that made it), under the keys ``amlops up`` and the Pulumi program use."""
        tags = {TAG_OBJECT: f"{self.namespace}/{self.name}"}
        for tag, annotation in (
            (TAG_COMMIT, ANNOTATION_GIT_COMMIT),
            (TAG_MANIFEST, ANNOTATION_SOURCE_FILE),
        ):
            if self.annotations.get(annotation):
                tags[tag] = self.annotations[annotation]
        return tags


def source_of(obj: Resource, root: Path, limits: Limits | None = None) -> Source:
    """Paths resolve against the manifest's folder inside ``root`` (the operator's
    ``source_root``) and must pass the core's containment rule (``amlops.core.files``):
    inside the root after symlinks, a file or a folder, within ``limits``."""
    top = root.resolve()
    file = obj.source_file
    base = top / PurePosixPath(file).parent if file else top

    def resolve(path: FieldPath, value: str) -> Path:
        target = base / local_target(value)
        try:
            return admit(top, target, limits, what=f"{format_path(path)}: {value!r}")
        except PathRefusedError as exc:
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
