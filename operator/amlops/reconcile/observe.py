"""What the kinds' observe steps share: reading the files a spec names and a model reference.

Observing is the one I/O a reconcile module does besides its actions' ``execute``; each kind's
``observe`` (called by ``amlops.reconcile.driver``) reads only through the ``Backend`` protocol
and these helpers, and hands the pure reconciler what it found.
"""

from __future__ import annotations

from pathlib import Path

from amlops.backends.base import Backend, ModelRef, ModelVersion
from amlops.core.digest import tree_digest


def digest_or_none(path: Path) -> str | None:
    """The digest of the files at ``path``; None when they are missing (the reconcilers stall
    naming the field)."""
    try:
        return tree_digest(path)
    except FileNotFoundError:
        return None


def model_version(backend: Backend, workspace: str, ref: ModelRef) -> ModelVersion | None:
    """The version ``ref`` names, or the latest when it names none."""
    if ref.registry is not None:
        return backend.get_registry_model(ref)
    if ref.version is None:
        return backend.latest_model_version(workspace, ref.name)
    return backend.get_model_version(workspace, ref.name, ref.version)
