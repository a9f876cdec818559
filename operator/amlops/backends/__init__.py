"""Backends carry out what the reconcile core decides: ``local`` (embedded) and ``azureml``.

The drivers (``amlops up``, the operator) name a backend and get it from ``open_backend``; each
backend's package is imported only when it is asked for, so the local default never pays for
importing ``azure.ai.ml`` (about a second). The operator acts for each namespace as the Azure
identity its WorkspaceBinding names: ``Backends`` opens one backend per (workspace, identity),
on first use, with that identity's credential (the local backend has no identities: one serves
every namespace).
"""

from __future__ import annotations

import importlib
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlops.backends.base import Backend
from amlops.kinds.workspace_binding import Identity

if TYPE_CHECKING:
    from amlops.core.config import DefaultWorkspace
    from amlops.core.manifests import Manifest


@dataclass(frozen=True)
class BackendOptions:
    """What a driver knows that a backend may need; each backend takes what it uses."""

    state_dir: Path = Path(".amlops")  # local: its state; azureml: unused
    source_root: Path | None = None  # files named by specs stay inside it (checked again)
    owner: str = ""  # the ``amlops-owner`` tag of what it makes
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

    backend = LocalBackend(options.state_dir, source_root=options.source_root, owner=options.owner)
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


# Which backends act as someone other than the driver's own identity.
WITH_IDENTITIES = frozenset({"azureml"})
LEARNT_KEPT = 64  # the sets of manifests a backend opened later is taught


class Backends:
    """The driver's backend and one more per (workspace, identity) it is asked for: a
    WorkspaceBinding's identity gets a backend of its own, opened on first use with the
    credential ``credential(identity)`` makes (called once per key, never logged), taught what
    the driver's backend learnt, and closed with it. The operator's own identity (an empty
    one) and a backend without identities (``local``) are the driver's backend."""

    def __init__(
        self,
        name: str,
        options: BackendOptions,
        opened: OpenedBackend,
        credential: Callable[[Identity], Any],
    ) -> None:
        self.name = name
        self.options = options
        self.default = opened
        self._credential = credential
        self._opened: dict[tuple[str, str], OpenedBackend] = {}
        # what the driver's backend learnt (the checkout's, each GitSource revision's), in
        # order, for a backend opened later; the latest sets suffice, as each pass relearns
        self._learnt: deque[tuple[Manifest, ...]] = deque(maxlen=LEARNT_KEPT)
        self._lock = threading.Lock()

    def get(self, workspace: str, identity: Identity) -> Backend:
        if self.name not in WITH_IDENTITIES or not identity.key:
            return self.default.backend
        key = (workspace, identity.key)
        with self._lock:
            found = self._opened.get(key)
            if found is None:
                options = replace(self.options, credential=self._credential(identity))
                found = open_backend(self.name, options)
                for manifests in self._learnt:
                    found.learn(manifests)
                self._opened[key] = found
            return found.backend

    def learn(self, manifests: Sequence[Manifest]) -> None:
        with self._lock:
            self._learnt.append(tuple(manifests))
            opened = [self.default, *self._opened.values()]
        for each in opened:
            each.learn(manifests)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
        for each in opened:
            each.close()
        self.default.close()
