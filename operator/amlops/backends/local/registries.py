"""Local registries: the offline stand-in for Azure ML registries (the model catalog's).

``<state>/registries/<registry>/models/<name>/<version>/`` holds a model version shared from a
workspace (``amlops registry share WORKSPACE/NAME:VERSION --registry REG``), in the layout
Azure ML gives ``AZUREML_MODEL_DIR``: a model registered from a folder sits one level down.
Versions are immutable, as in a registry: sharing the same files again is a no-op, other files
under a shared version are refused.

A model served as a service (a serverless endpoint) has no deployment and so no code of its
own; locally it scores itself: the ``score.py`` at the top of its files (the version folder, or
the folder it was registered from) is its scoring script.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from amlops.backends.base import BackendError, BackendUnsupported, ModelRef, ModelVersion
from amlops.core.digest import tree_digest

SCORING_SCRIPT = "score.py"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def not_offline(ref: ModelRef) -> BackendUnsupported:
    named = f"azureml://registries/{ref.registry}/models/{ref.name}"
    if ref.version is not None:
        named += f"/versions/{ref.version}"
    return BackendUnsupported(
        f"model {named} is in Azure ML registry {ref.registry!r} and the local backend cannot "
        "have it offline; share a model into the local registry with `amlops registry share "
        f"WORKSPACE/NAME:VERSION --registry {ref.registry}`, or use the azureml backend"
    )


class LocalRegistries:
    def __init__(self, root: Path) -> None:
        self.root = root / "registries"

    def _folder(self, registry: str, name: str) -> Path:
        for part in (registry, name):
            if not _NAME_RE.match(part):
                raise BackendError(f"{part!r} is not a registry or model name")
        return self.root / registry / "models" / name

    def get(self, ref: ModelRef) -> ModelVersion | None:
        """The shared version ``ref`` names (the highest one when it names none)."""
        if ref.registry is None:
            return None
        folder = self._folder(ref.registry, ref.name)
        if ref.version is not None:
            version = folder / ref.version
            return self._version(ref.registry, ref.name, version) if version.is_dir() else None
        versions = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        if not versions:
            return None
        latest = max(versions, key=lambda p: (p.name.isdigit(), _number(p.name), p.name))
        return self._version(ref.registry, ref.name, latest)

    def _version(self, registry: str, name: str, folder: Path) -> ModelVersion:
        return ModelVersion(
            workspace="",
            name=name,
            version=folder.name,
            asset_id=f"azureml://registries/{registry}/models/{name}/versions/{folder.name}",
            digest=tree_digest(folder),
            type="custom_model",
            description="",
            tags={},
            created_at="",
            location=str(folder),
            registry=registry,
        )

    def share(self, model: ModelVersion, registry: str) -> ModelVersion:
        """Copy a registered version's files into ``registry`` under its name and version."""
        target = self._folder(registry, model.name) / model.version
        source = Path(model.location)
        if target.is_dir():
            if tree_digest(target) != tree_digest(source):
                raise BackendError(
                    f"model {model.name}:{model.version} is already in registry {registry} with "
                    "other files; versions are immutable: share a new version"
                )
            return self._version(registry, model.name, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        # copied beside the target, then renamed: a reader never sees half a version
        staging = Path(tempfile.mkdtemp(prefix=".share-", dir=target.parent))
        try:
            shutil.copytree(source, staging / "v", symlinks=False)
            (staging / "v").rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self._version(registry, model.name, target)


def scoring_script(model: ModelVersion) -> Path:
    """The model's own ``score.py``: at the top of the version folder, or of the folder the
    version was registered from; BackendError naming the model when it has none."""
    folder = Path(model.location)
    candidates = [folder / SCORING_SCRIPT]
    inner = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if len(inner) == 1:
        candidates.append(inner[0] / SCORING_SCRIPT)
    for script in candidates:
        if script.is_file():
            return script
    raise BackendError(
        f"model {model.ref} has no {SCORING_SCRIPT} at the top of its files ({folder}); locally a "
        f"model served as a service scores itself: add {SCORING_SCRIPT} (init/run) to the "
        "model's folder, register it as a new version and share that"
    )


def _number(text: str) -> int:
    return int(text) if text.isdigit() else -1
