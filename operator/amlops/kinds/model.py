"""Model: an Azure ML model asset (name, version, path, type, tags), registered by the operator."""

from __future__ import annotations

from amlops.kinds.base import Crd, Kind, Part, check_workspace, declare_asset

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
