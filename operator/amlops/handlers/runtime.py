"""What the handlers share at run time, built once by the startup hook and kept in Kopf's memo:
the backend, a Kubernetes client for the Secrets we own, metrics, per-object locks, and what
the source root declares that the backend must know (``Sources``)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from amlops.backends import BackendOptions, Backends, open_backend
from amlops.backends.base import Backend
from amlops.core.config import load_config
from amlops.core.findings import Finding
from amlops.core.limits import Limits
from amlops.core.manifests import Manifest, iter_yaml_files, load_tree
from amlops.core.schemas import load_schemas
from amlops.handlers.metrics import Metrics
from amlops.handlers.options import Settings
from amlops.handlers.tenancy import credential

log = logging.getLogger(__name__)

# A reconcile asks whether the checkout changed; one look at its files per this many seconds
# answers every reconcile in between (1,000 objects must not mean 1,000 scans of the tree).
RESCAN_S = 2.0

# (path, inode, mtime, size) of each YAML file: a git-sync swap or an edit changes one of them
Stamp = tuple[tuple[str, int, int, int], ...]


class Sources:
    """What the source root declares that the backend must know but no custom resource
    carries: the local backend's compute (Pulumi provisions it in Azure), Azure ML's resource
    groups. Learnt at start-up and again whenever the checkout's YAML files change (a cheap
    look at their stats, at most every ``RESCAN_S``), so a ComputeCluster added after start-up
    reaches the Pipelines waiting for it, and a checkout that appears after start-up counts.

    A manifest that fails its schema (``maxInstances: two``) is not learnt: it is logged once
    with its file, line and field and skipped, and the operator carries on with the rest."""

    def __init__(
        self,
        root: Path,
        learn: Callable[[Sequence[Manifest]], None],
        limits: Limits,
        rescan_s: float = RESCAN_S,
    ) -> None:
        self.root = root
        self._learn = learn
        self._limits = limits
        self._rescan_s = rescan_s
        self._busy = threading.Lock()
        self._looked = float("-inf")
        self._stamp: Stamp | None = None
        self._reported: set[Finding] = set()

    def learn(self, manifests: Sequence[Manifest]) -> None:
        """What a GitSource's validated revision declares (its compute), learnt like the
        checkout's."""
        with self._busy:
            self._learn(manifests)

    def refresh(self) -> bool:
        """Learn the checkout again if it changed; True when it was learnt. Never raises: a
        reconcile must not fail because of a file no custom resource names. Returns at once
        when another thread is looking already."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            now = time.monotonic()
            if now - self._looked < self._rescan_s:
                return False
            self._looked = now
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return False
            self._stamp = stamp  # a checkout that cannot be learnt is tried again once changed
            if stamp is None:
                return False
            try:
                self._learn(self._usable())
            except Exception:  # a backend error: the next change of the checkout tries again
                log.exception("could not learn the manifests under %s", self.root)
                return False
            return True
        finally:
            self._busy.release()

    def _stamp_now(self) -> Stamp | None:
        if not self.root.is_dir():
            return None
        out = []
        for path in iter_yaml_files([self.root]):
            try:
                st = path.stat()
            except OSError:  # removed while we looked: the next look sees the change
                continue
            out.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _usable(self) -> list[Manifest]:
        loaded = load_tree([self.root], root=self.root, limits=self._limits)
        schemas = load_schemas()
        usable = []
        found: dict[Finding, str] = {f: "not read" for f in loaded.findings if f.is_error}
        for manifest in loaded.manifests:
            problems = [f for f in schemas.check(manifest) if f.is_error]
            found.update(dict.fromkeys(problems, f"{manifest.ref} skipped"))
            if not problems:
                usable.append(manifest)
        # once per finding, not once per look: what is still wrong was reported already
        for finding, what in found.items():
            if finding not in self._reported:
                self._report(finding, what)
        self._reported = set(found)
        return usable

    def _report(self, finding: Finding, what: str) -> None:
        file = finding.file
        if Path(file).is_absolute() and Path(file).is_relative_to(self.root):
            file = os.path.relpath(file, self.root)
        at = f" {finding.field}:" if finding.field else ""
        log.warning(
            "%s:%d:%d: %s:%s %s [%s]",
            file,
            finding.line,
            finding.column,
            what,
            at,
            finding.message,
            finding.rule,
        )


@dataclass
class Runtime:
    settings: Settings
    backend: Backend
    kube: Any  # kubernetes.client.ApiClient (untyped library)
    metrics: Metrics
    close_backend: Callable[[], None]
    sources: Sources | None = None  # None: the backend needs nothing from the checkout
    # one per (workspace, identity) a WorkspaceBinding names (amlops.handlers.tenancy)
    backends: Backends | None = None
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
    def try_exclusive(self, uid: str, *, blocking: bool = False) -> Iterator[bool]:
        """Like ``exclusive`` but gives up at once (a busy object needs no drift check), or
        waits with ``blocking`` (True then)."""
        lock = self._lock(uid)
        got = lock.acquire(blocking=blocking)
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
    options = BackendOptions(
        state_dir=settings.state_dir,
        # the local backend in the pod reads what the handlers resolved, as before
        source_root=root if settings.backend != "local" else None,
        owner=owner_identity(),
        config=config,
    )
    opened = open_backend(settings.backend, options)
    kube = kube_client()
    # a namespace's backend acts as its WorkspaceBinding's identity
    backends = Backends(settings.backend, options, opened, lambda i: credential(i, kube))
    # What the checkout declares, now and whenever it changes (see Sources).
    sources = Sources(root, backends.learn, settings.limits)
    sources.refresh()
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    log.info(
        "backend %s at %s; sources from %s",
        settings.backend,
        settings.state_dir,
        settings.source_root,
    )
    return Runtime(settings, opened.backend, kube, metrics, backends.close, sources, backends)
