"""Backends carry out what the reconcile core decides: ``local`` (embedded) and ``azureml``.

The drivers (``amlops up``, the operator) name a backend and get it from ``open_backend``; each
backend's package is imported only when it is asked for, so the local default never pays for
importing ``azure.ai.ml`` (about a second).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlops.backends.base import Backend

if TYPE_CHECKING:
    from amlops.core.config import DefaultWorkspace
    from amlops.core.manifests import Manifest


@dataclass(frozen=True)
class BackendOptions:
    """What a driver knows that a backend may need; each backend takes what it uses."""

    state_dir: Path = Path(".amlops")  # local: its state; azureml: unused
    source_root: Path | None = None  # files named by specs stay inside it (checked again)
    owner: str = ""  # azureml: the ``amlops-owner`` tag of what it makes
    config: DefaultWorkspace | None = None  # azureml: amlops.yaml ``workspace:``
    env: Mapping[str, str] | None = None  # azureml: AMLOPS_AZURE_* (default os.environ)
    credential: Any = None  # azureml: default DefaultAzureCredential
    client_kwargs: Mapping[str, Any] = field(default_factory=dict)  # azureml: MLClient's


@dataclass(frozen=True)
class OpenedBackend:
    backend: Backend
    # what a backend learns from the manifests of each pass (the local backend's compute,
    # Azure ML's resource groups and deployments as written)
    learn: Callable[[Sequence[Manifest]], None]
    close: Callable[[], None]


def _local(options: BackendOptions) -> OpenedBackend:
    from amlops.backends.local.backend import LocalBackend

    backend = LocalBackend(options.state_dir, source_root=options.source_root)
    try:
        backend.start()  # takes the state directory; adopts what a killed process left
    except BaseException:
        backend.close()
        raise
    return OpenedBackend(backend, backend.seed_computes, backend.close)


def _azureml(options: BackendOptions) -> OpenedBackend:
    module = importlib.import_module("amlops.backends.azureml")
    settings = module.AzureSettings.from_env(options.env)
    backend = module.AzureMLBackend(
        settings,
        owner=options.owner,
        credential=options.credential,
        config=options.config,
        client_kwargs=options.client_kwargs,
        source_root=options.source_root,
    )
    return OpenedBackend(backend, backend.learn, backend.close)


BACKENDS: dict[str, Callable[[BackendOptions], OpenedBackend]] = {
    "local": _local,
    "azureml": _azureml,
}


class UnknownBackendError(ValueError):
    pass


def open_backend(name: str, options: BackendOptions) -> OpenedBackend:
    factory = BACKENDS.get(name)
    if factory is None:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(f"no backend {name!r} (known: {known})")
    return factory(options)
