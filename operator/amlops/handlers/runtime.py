"""What the handlers share at run time, built once by the startup hook and kept in Kopf's memo:
the backend, a Kubernetes client for the Secrets we own, metrics and per-object locks."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from amlops.backends import BackendOptions, open_backend
from amlops.backends.base import Backend
from amlops.core.config import load_config
from amlops.core.manifests import load_tree
from amlops.handlers.metrics import Metrics
from amlops.handlers.options import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    backend: Backend
    kube: Any  # kubernetes.client.ApiClient (untyped library)
    metrics: Metrics
    close_backend: Callable[[], None]
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def _lock(self, uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    @contextmanager
    def exclusive(self, uid: str) -> Iterator[None]:
        """One reconcile of an object at a time: the change handlers and the drift timer of
        one object run in different threads."""
        with self._lock(uid):
            yield

    @contextmanager
    def try_exclusive(self, uid: str) -> Iterator[bool]:
        """Like ``exclusive`` but gives up at once: a busy object needs no drift check."""
        lock = self._lock(uid)
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()

    def forget(self, uid: str) -> None:
        with self._locks_guard:
            self._locks.pop(uid, None)
        self.metrics.objects.forget(uid)

    def close(self) -> None:
        self.metrics.close()
        self.close_backend()
        self.kube.close()


def of(memo: kopf.Memo) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the amlops startup hook did not run (start with amlops.handlers)")
    return runtime


def kube_client() -> Any:
    """In a pod: its ServiceAccount; elsewhere: the current kubeconfig context (as Kopf)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        path = os.environ.get("KUBECONFIG") or "~/.kube/config"  # read now, not at import
        k8s_config.load_kube_config(path, client_configuration=configuration)
    return k8s.ApiClient(configuration)


def owner_identity() -> str:
    """Who this operator is to Azure ML (the ``amlops-owner`` tag) unless AMLOPS_AZURE_OWNER
    says: its namespace (the Deployment sets POD_NAMESPACE). Set AMLOPS_AZURE_OWNER to a
    cluster-wide unique name when several clusters share a workspace."""
    return f"amlops-operator:{os.environ.get('POD_NAMESPACE') or 'default'}"


def start(settings: Settings) -> Runtime:
    root = settings.source_root
    config = load_config(root).workspace if root.is_dir() else None
    opened = open_backend(
        settings.backend,
        BackendOptions(
            state_dir=settings.state_dir,
            # the local backend in the pod reads what the handlers resolved, as before
            source_root=root if settings.backend != "local" else None,
            owner=owner_identity(),
            config=config,
        ),
    )
    # What the checkout declares: the local backend's compute (Pulumi provisions it in Azure),
    # Azure ML's resource groups.
    if root.is_dir():
        opened.learn(load_tree([root], root=root).manifests)
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    log.info(
        "backend %s at %s; sources from %s",
        settings.backend,
        settings.state_dir,
        settings.source_root,
    )
    return Runtime(settings, opened.backend, kube_client(), metrics, opened.close)
