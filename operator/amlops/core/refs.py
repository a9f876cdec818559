"""Cross-references between manifests. A dangling reference is an error at the referring line.

Registry assets (``azureml://registries/...``), ARM IDs and Azure ML's curated environments
(``AzureML-...``) live outside the repository and are accepted as they are. Each kind says what
it declares and checks what it references (``amlops.kinds``); this module runs them over a tree
and checks the files manifests name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from amlops.core import files
from amlops.core.assets import is_local
from amlops.core.findings import Finding
from amlops.core.manifests import Manifest
from amlops.core.source import FieldPath
from amlops.kinds import KINDS
from amlops.kinds.base import Declared, Outside
from amlops.kinds.component import ComponentsDeclared

_PATH_FIELDS = ("path", "code", "conda_file", "component")


def local_paths(prefix: FieldPath, value: Any) -> Iterator[tuple[FieldPath, str, str]]:
    """Every ``path:``/``code:``/``conda_file:``/``component:`` naming a local file or folder:
    (where, field name, the path as written)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = (*prefix, key)
            if key in _PATH_FIELDS and isinstance(item, str) and is_local(item):
                yield path, key, item
            else:
                yield from local_paths(path, item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from local_paths((*prefix, i), item)


# Paths written relative to another path field of the same mapping: (field, relative to).
_NESTED_FIELDS = (("scoring_script", "code"), ("dockerfile_path", "path"))


def read_paths(
    prefix: FieldPath, value: Any
) -> Iterator[tuple[FieldPath, str, str, FieldPath | None]]:
    """``local_paths`` plus the paths written relative to one of them (a deployment's
    ``scoring_script`` inside its ``code``, a build's ``dockerfile_path`` inside its
    ``path``), joined: (where, field name, path relative to the manifest, where the path it
    is relative to is written, or None). Every file a reader of the spec may open is here;
    a path comes after the one it is relative to."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = (*prefix, key)
            if key in _PATH_FIELDS and isinstance(item, str) and is_local(item):
                yield path, key, item, None
            else:
                yield from read_paths(path, item)
        for name, parent in _NESTED_FIELDS:
            item, base = value.get(name), value.get(parent)
            if isinstance(item, str) and isinstance(base, str) and is_local(base):
                joined = os.path.join(files.local_target(base), files.local_target(item))
                yield (*prefix, name), name, joined, (*prefix, parent)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from read_paths((*prefix, i), item)


def check_files(m: Manifest, checker: files.Checker, *, on_disk: bool = True) -> list[Finding]:
    """Findings for the files ``m`` names: outside the source root, special or over a size
    limit (``amlops.core.files``), or, ``on_disk``, missing. ``on_disk`` False (a Git
    revision that is not checked out) checks only where the paths point."""
    if not KINDS[m.kind].names_files:
        return []
    findings = []
    refused: set[FieldPath] = set()
    for path, name, value, relative_to in read_paths(("spec",), m.spec):
        if relative_to in refused:
            continue  # one finding for one mistake: the folder it is relative to is refused
        doc = m.document(path)
        verdict = checker.check(doc.file, doc.root, value, on_disk=on_disk)
        if verdict.problem is not None:
            refused.add(path)
            findings.append(m.finding(path, verdict.problem.rule, f"{name}: {verdict.problem}"))
        elif on_disk and relative_to is None and not verdict.exists:
            findings.append(
                m.finding(
                    path,
                    "ref.missing-file",
                    f"{name}: {value!r} does not exist (resolved to {verdict.resolved}); paths "
                    "are relative to the file that names them",
                )
            )
    return findings


def declared(manifests: list[Manifest], outside: Outside | None = None) -> Declared:
    """What ``manifests`` declare, each kind adding its own, and what ``outside`` (the
    repository config) says exists in Azure without a manifest."""
    out = ComponentsDeclared(outside=outside or Outside())
    for m in manifests:
        KINDS[m.kind].declare(m, out)
    return out


def inline_environments(m: Manifest) -> Iterator[tuple[FieldPath, dict[str, Any]]]:
    """Environments written out in a deployment or step (image, conda_file) instead of named."""
    for path, value in KINDS[m.kind].environments(m.spec):
        if isinstance(value, dict):
            yield path, value


def environment_refs(m: Manifest) -> Iterator[tuple[FieldPath, str]]:
    """Environments a deployment or step names (``azureml:NAME:VERSION``)."""
    for path, value in KINDS[m.kind].environments(m.spec):
        if isinstance(value, str):
            yield path, value


def check(
    all_manifests: list[Manifest], valid: list[Manifest], outside: Outside | None = None
) -> list[Finding]:
    """Cross-references of the ``valid`` manifests (the files a manifest names:
    ``check_files``).

    Everything in ``all_manifests`` counts as declared, also an object that fails its schema:
    it exists, it is just wrong, and its own finding says so. Counting only the valid ones
    would make every pipeline on an invalid cluster report it "not declared" as well.
    """
    findings = list(_duplicates(all_manifests))
    known = declared(all_manifests, outside)
    for m in valid:
        found = KINDS[m.kind].references(m, known)
        if m.workspace is None:
            # A plain file bound to no workspace: the loader says so once
            # (``load.no-default-workspace``); its other references are still checked.
            found = (f for f in found if f.rule != "ref.workspace")
        findings.extend(found)
    return findings


def _duplicates(manifests: list[Manifest]) -> Iterator[Finding]:
    seen: dict[tuple[str, str, str], Manifest] = {}
    for m in manifests:
        first = seen.get(m.key)
        if first is not None:
            where = first.locate(("metadata", "name"))
            scope = (
                f" in workspace {m.workspace!r}" if m.workspace and m.kind != "Workspace" else ""
            )
            yield m.finding(
                ("metadata", "name"),
                "ref.duplicate",
                f"{m.kind} {m.name!r}{scope} is already declared at {where.file}:{where.line}; "
                "names are unique per kind and workspace",
            )
        else:
            seen[m.key] = m
