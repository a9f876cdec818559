"""How manifests name Azure ML assets: ``azureml:`` references, registry and ARM IDs, local paths.

Its own module, below both the manifest loader and the kinds, because every kind's reference
checks and the pipeline job graph parse these and the loader recognises model types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The model asset types Azure ML registers; a pipeline input or output of one of these names
# a model.
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")

_ASSET_RE = re.compile(
    r"^azureml:(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[^:@]+)|@(?P<label>\w+))?$"
)
# A model in an Azure ML registry, such as the model catalog's (``azureml`` registry).
_REGISTRY_MODEL_RE = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/models/(?P<name>[^/]+)"
    r"(?P<suffix>/versions/(?P<version>[^/]+)|/labels/latest)?$"
)


@dataclass(frozen=True)
class AssetRef:
    """An asset reference as written: ``azureml:NAME:VERSION``, ``azureml:NAME@LABEL`` or
    ``azureml:NAME``."""

    name: str
    version: str | None
    label: str | None


@dataclass(frozen=True)
class ModelRef:
    """A model version a backend can resolve: ``version`` None means the latest version.

    Distinct from AssetRef on purpose: it is what the Backend protocol takes, with the label
    already narrowed to the one every backend understands (``@latest``)."""

    name: str
    version: str | None = None
    registry: str | None = None  # a registry's model (the model catalog's), not the workspace's

    def __str__(self) -> str:
        if self.registry is not None:
            at = f"versions/{self.version}" if self.version else "labels/latest"
            return f"azureml://registries/{self.registry}/models/{self.name}/{at}"
        return f"{self.name}:{self.version}" if self.version else f"{self.name}@latest"


def parse_asset_ref(value: str) -> AssetRef | None:
    """``azureml:name:1`` / ``azureml:name@latest``; None for external or non-asset values."""
    match = _ASSET_RE.match(value)
    if not match:
        return None
    return AssetRef(match["name"], match["version"], match["label"])


def parse_model_ref(value: str) -> ModelRef | None:
    """``azureml:name:version`` / ``azureml:name@latest`` / a registry's
    ``azureml://registries/REG/models/NAME/versions/V`` -> ModelRef; None for anything else."""
    registry = _REGISTRY_MODEL_RE.match(value)
    if registry is not None and registry["suffix"] is not None:
        return ModelRef(registry["name"], registry["version"], registry["registry"])
    ref = parse_asset_ref(value)
    if ref is None or ref.label not in (None, "latest"):
        return None
    return ModelRef(ref.name, ref.version)


def parse_registry_model_id(value: str) -> ModelRef | None:
    """A serverless endpoint's ``model_id``: a registry model, where Azure ML also takes the
    model alone (``azureml://registries/REG/models/NAME``, its latest version); None for
    anything else (a workspace model cannot be served as a service)."""
    match = _REGISTRY_MODEL_RE.match(value)
    if match is None:
        return None
    return ModelRef(match["name"], match["version"], match["registry"])


def is_external(value: str) -> bool:
    """Registry assets, ARM IDs and curated environments live outside the repository."""
    return value.startswith(("azureml://", "azureml:/subscriptions/")) or value.startswith(
        "azureml:AzureML-"
    )


def is_local(value: str) -> bool:
    """A path on disk, relative to the file that names it (not an asset, URL or binding);
    ``file:`` URIs, which Azure ML reads from the local disk too, count as paths."""
    if value.startswith("file:"):
        return True
    return not (value.startswith(("azureml:", "${{")) or "://" in value)


def compute_name(value: str) -> str:
    return value.removeprefix("azureml:")
