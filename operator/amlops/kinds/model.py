"""Model: an Azure ML model asset (name, version, path, type, tags), registered by the operator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds.base import (
    Crd,
    Kind,
    Lifecycle,
    Part,
    check_workspace,
    declare_asset,
    spec_finding,
)

MODEL: FieldPath = ("spec", "model")
PATH_FIELD: FieldPath = (*MODEL, "path")


@dataclass(frozen=True)
class ModelSpec:
    """``spec.model`` as the reconcilers read it."""

    name: str
    path: str  # as written: relative to the manifest's file
    version: str | None = None  # None: changed files become the next version
    type: str = "custom_model"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[ModelSpec | None, list[Finding]]:
    """Read a Model spec once; a spec that cannot be registered is None with its findings."""
    model = spec.get("model")
    if not isinstance(model, Mapping):
        return None, [spec_finding(locator, "Model", MODEL, "write the model asset here")]
    findings = [
        spec_finding(locator, "Model", (*MODEL, key), f"set the model's {key}")
        for key in ("name", "path")
        if model.get(key) is None
    ]
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
        lifecycle=Lifecycle.of(spec),
    ), []


KIND = Kind(
    name="Model",
    engine="operator",
    crd=Crd(
        plural="models",
        short_names=("amlmodel",),
        columns=({"name": "Version", "type": "string", "jsonPath": ".status.version"},),
    ),
    parts=(Part("model", "load_model", cli_type="model"),),
    declare=declare_asset("model", "models"),
    references=check_workspace,
)
