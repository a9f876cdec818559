"""What a pure reconciler takes besides the spec: where the object was written (a locator:
field paths -> positions) and the files it names (relative paths -> absolute ones: Azure ML
resolves ``path:``/``code:`` against the YAML file); what every driver knows of one object
(``Inputs``) and of one it deletes (``Gone``); and the digest its fingerprints are made of.

``resolve`` is where a reconciler learns which files to read, so it applies the containment
rule (``amlops.core.files.admit``): a path outside the source root, a special file or a
folder over the size limits raises ``PathRefusedError`` (a ValueError naming the field), which
the drivers turn into a Stalled condition before any backend reads a byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from amlops.core.findings import Finding, format_path
from amlops.core.limits import Limits
from amlops.core.locator import NO_LINE, Locator
from amlops.core.manifests import Manifest
from amlops.core.provenance import TAG_OBJECT
from amlops.core.source import FieldPath
from amlops.kinds.component import Named, Repository
from amlops.reconcile.conditions import Outcome, Phase

T = TypeVar("T")


class SpecError(ValueError):
    """A spec the reconcile core cannot use; the message names the field."""


def _where(file: str, line: int, field_name: str) -> str:
    """``manifests/x.yaml:12 spec.model.path``; without a line (an object with no text behind
    it) the file alone, or just the field."""
    at = f"{file}:{line}" if line != NO_LINE else file
    return f"{at} {field_name}" if at else field_name


def describe(finding: Finding) -> str:
    """A finding as a condition message: where, then what."""
    return f"{_where(finding.file, finding.line, finding.field)}: {finding.message}"


def accepted(parsed: tuple[T | None, list[Finding]]) -> T:
    """The typed spec of a kind's ``parse``, or SpecError naming every finding."""
    spec, findings = parsed
    if spec is None:
        raise SpecError("; ".join(describe(f) for f in findings))
    return spec


@dataclass(frozen=True)
class Source:
    locator: Locator  # where each field of the object was written
    resolve: Callable[[FieldPath, str], Path]  # a path written at a field -> absolute path
    # ``azureml:NAME:VERSION`` written at a field -> the Component of the repository it names
    # (None: the repository declares none such); None: no repository to look in, as for the
    # operator, which gets one object at a time and has no Component objects
    components: Callable[[FieldPath, str], Named | None] | None = None

    def field(self, path: FieldPath) -> str:
        """``manifests/x.yaml:12 spec.model.path``: where to look, for messages."""
        pos = self.locator.locate(path)
        return _where(pos.file, pos.line, format_path(path))

    @classmethod
    def of(
        cls,
        manifest: Manifest,
        limits: Limits | None = None,
        components: Repository | None = None,
    ) -> Source:
        """Paths resolve against the manifest's file and stay inside its source root;
        ``azureml:`` components are looked up in ``components`` (the manifests' repository)."""

        def resolve(path: FieldPath, value: str) -> Path:
            return manifest.contained_path(path, value, limits)

        if components is None:
            return cls(manifest, resolve)
        repository = components

        def component(path: FieldPath, value: str) -> Named | None:
            return repository.naming(manifest, path)(value)

        return cls(manifest, resolve, component)


@dataclass(frozen=True)
class Inputs:
    """What every driver knows of one object when it reconciles it: ``amlops up`` from a
    manifest and its status store, the operator from a custom resource."""

    workspace: str
    name: str
    spec: Mapping[str, Any]  # as written; each kind's ``parse`` reads it
    generation: int
    source: Source
    tags: Mapping[str, str] = field(default_factory=dict)  # provenance (amlops.core.provenance)
    requested_at: str | None = None  # when a run was last requested (Pipeline)


@dataclass(frozen=True)
class Gone:
    """An object whose manifest or custom resource was deleted, as its last status left it:
    what every driver knows of an object when it finalizes it."""

    workspace: str
    name: str
    status: Mapping[str, Any]
    deletion_policy: str
    tags: Mapping[str, str] = field(default_factory=dict)  # as ``Inputs.tags``: its identity


def owner_of(tags: Mapping[str, str]) -> str:
    """Which object an asset (or a request) is for: its ``amlops-object`` tag (namespace/name,
    set by the operator), "" when it has none (``amlops up``, whose backend owner says it all,
    or an asset made outside amlops)."""
    return tags.get(TAG_OBJECT, "")


def owned_by(asset: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """An asset with tags ``asset`` is the object's whose assets get tags ``wanted``."""
    return owner_of(asset) == owner_of(wanted)


def owned_elsewhere(asset: str, workspace: str, owner: str, name_field: str) -> Outcome:
    """Stalled on ``asset`` of ``workspace``, which is ``owner``'s ("": made outside amlops):
    never adopted, changed or deleted; the fix is another name at ``name_field``."""
    by = f"amlops object {owner}" if owner else "no amlops object (made outside it)"
    return Outcome(
        Phase.STALLED,
        "OwnedElsewhere",
        f"{asset} in workspace {workspace} belongs to {by}: this object does not adopt, change "
        f"or delete it; give {name_field} another name",
    )


def digest_of(value: Any) -> str:
    """A stable sha256 of JSON-able data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
