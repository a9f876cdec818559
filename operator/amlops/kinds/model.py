"""Model: an Azure ML model asset (name, version, path, type, tags), registered by the operator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amlops.core.assets import is_local
from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds import base

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

MODEL: FieldPath = ("spec", "model")
PATH_FIELD: FieldPath = (*MODEL, "path")

# Azure ML also registers a model from a datastore or a URL; amlops registers the files the
# repository holds (their digest decides the version), so such a path is refused up front.
REMOTE_PATH = (
    "amlops registers a model from files in the repository: write a path relative to this "
    "file; a model whose files are already in a datastore is registered there and referenced "
    "as azureml:NAME:VERSION"
)


def remote_path(value: Any) -> bool:
    """``path:`` names a datastore, URL or asset rather than files next to the manifest."""
    return isinstance(value, str) and not is_local(value)


@dataclass(frozen=True)
class ModelSpec:
    """``spec.model`` as the reconcilers read it."""

    name: str
    path: str  # as written: relative to the manifest's file
    version: str | None = None  # None: changed files become the next version
    type: str = "custom_model"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    lifecycle: base.Lifecycle = field(default_factory=base.Lifecycle)


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[ModelSpec | None, list[Finding]]:
    """Read a Model spec once; a spec that cannot be registered is None with its findings."""
    model = spec.get("model")
    if not isinstance(model, Mapping):
        return None, [base.spec_finding(locator, "Model", MODEL, "write the model asset here")]
    findings = [
        base.spec_finding(locator, "Model", (*MODEL, key), f"set the model's {key}")
        for key in ("name", "path")
        if model.get(key) is None
    ]
    if not findings and remote_path(model["path"]):
        findings = [base.spec_finding(locator, "Model", PATH_FIELD, REMOTE_PATH)]
    if findings:
        return None, findings
    version, tags = model.get("version"), model.get("tags")
    return ModelSpec(
        name=str(model["name"]),
        path=str(model["path"]),
        version=str(version) if version is not None else None,
        type=str(model.get("type", "custom_model")),
        description=str(model.get("description", "")),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {},
        lifecycle=base.Lifecycle.of(spec),
    ), []


def _references(m: Manifest, declared: base.Declared) -> Iterator[Finding]:
    yield from base.check_workspace(m, declared)
    model = m.spec.get("model")
    # what ``parse`` refuses, validate reports: whatever validate accepts, ``up`` runs
    if isinstance(model, Mapping) and remote_path(model.get("path")):
        yield m.finding(PATH_FIELD, base.RULE_SPEC, REMOTE_PATH)


KIND = base.Kind(
    name="Model",
    engine="operator",
    crd=base.Crd(
        short_names=("amlmodel",),
        columns=(base.Column("Version", ".status.version"),),
    ),
    parts=(base.Part("model", "load_model", cli_type="model", versioned=True),),
    declare=base.declare_asset("model", "models"),
    references=_references,
)
