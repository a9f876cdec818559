"""The local backend's state directory as the commands see it, and what can be wrong with it.

``up`` and ``run`` open it to run things (created if missing); ``status``, ``invoke`` and
``run --path``-less lookups open it read-only, so they work on a folder nobody may write to and
never change it. ``up --backend azureml`` keeps only its object records here (what Kubernetes
would keep for each object; the assets are in Azure ML): an ``UpSession`` pairs the records
with either backend. A file where the folder should be, a folder that cannot be created or written,
a catalog that is not a SQLite database or has a damaged page: each reaches the user as one
message naming the file and saying what to do, with exit code 1. It is the state of this
machine, not a bug of amlops (which exit 2, "internal error", would claim).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, ParamSpec

from rich.text import Text

from amlops.backends import BackendOptions, OpenedBackend, open_backend
from amlops.backends.base import Backend, BackendError
from amlops.backends.local.backend import (
    CATALOG_FILE,
    DEFAULT_STATE_DIR,
    LocalBackend,
    lock_state_dir,
    prepare_state_dir,
)
from amlops.backends.local.db import Database, StateError
from amlops.backends.local.objects import ObjectStore
from amlops.cli import common
from amlops.core import files
from amlops.core.config import find_config
from amlops.core.manifests import Manifest

P = ParamSpec("P")
BACKENDS = ("local", "azureml")
META_BACKEND = "backend"  # which backend the last `up` ran (`status` says so)


def add_state_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the local backend keeps its state (default: {DEFAULT_STATE_DIR})",
    )


def reports_state_errors(command: Callable[P, int]) -> Callable[P, int]:
    """Wrap a command: a StateError becomes its message on stderr and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except StateError as exc:
            show_error(str(exc))
            return common.EXIT_FINDINGS

    return wrapper


def show_error(message: str) -> None:
    # soft wrap: the file named in it stays whole, to be copied
    common.stderr.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)


def open_writable(state_dir: str, manifests: Path | None = None) -> LocalBackend:
    """The state directory, created if missing, for a command that runs or asks for things.
    ``manifests``: what it runs; the files they name must stay inside its source root."""
    root = files.default_roots([manifests])[0] if manifests is not None else None
    backend = LocalBackend(state_dir, source_root=root)
    for note in backend.notes:
        common.stderr.print(Text.assemble(("note:", "yellow"), f" {note}"), soft_wrap=True)
    return backend


def has_state(state_dir: str) -> bool:
    """Whether ``state_dir`` holds a catalog (a file in its place counts: opening it says so)."""
    path = Path(state_dir)
    return (path / CATALOG_FILE).exists() or (path.exists() and not path.is_dir())


def open_existing(state_dir: str, prog: str) -> LocalBackend:
    """An existing state directory, read-only: nothing is created, written or migrated."""
    if not has_state(state_dir):
        raise common.UsageError(f"no state in {state_dir}: run `{prog} up` first")
    return LocalBackend(state_dir, read_only=True)


# -- amlops up: a backend and the object records -------------------------------------------


class UpSession:
    """What ``amlops up`` runs against: the reconcile backend, the object records in the
    state directory, and their lifecycle. The local backend keeps both in one catalog."""

    name = "local"

    def __init__(self, local: LocalBackend) -> None:
        self._local = local

    @property
    def backend(self) -> Backend:
        return self._local

    @property
    def objects(self) -> ObjectStore:
        return self._local.objects  # a new one after reset_after_loss

    @property
    def root(self) -> Path:
        return self._local.root

    def learn(self, manifests: Sequence[Manifest]) -> None:
        self._local.seed_computes(manifests)

    def start(self) -> None:
        self._local.start()

    def close(self, message: str) -> None:
        self._local.close(message)

    def state_dir_intact(self) -> bool:
        return self._local.state_dir_intact()

    def reset_after_loss(self) -> None:
        self._local.reset_after_loss()

    def check_state(self) -> None:
        self._local.check_state()

    def record_manifests_path(self, path: Path) -> None:
        self._local.record_manifests_path(path)
        self._local.db.set_meta(META_BACKEND, self.name)


class RemoteSession(UpSession):
    """A backend elsewhere (Azure ML) with the object records in the state directory."""

    def __init__(self, name: str, state_dir: str, opened: OpenedBackend) -> None:
        self.name = name
        self._root = Path(state_dir).resolve()
        self._opened = opened
        self._lock_file: IO[str] | None = None
        self._open_records()

    def _open_records(self) -> None:
        for note in prepare_state_dir(self._root):
            common.stderr.print(Text.assemble(("note:", "yellow"), f" {note}"), soft_wrap=True)
        self._db = Database(self._root / CATALOG_FILE)
        self._objects = ObjectStore(self._db)
        self._inode = (self._root / CATALOG_FILE).stat().st_ino

    @property
    def backend(self) -> Backend:
        return self._opened.backend

    @property
    def objects(self) -> ObjectStore:
        return self._objects

    @property
    def root(self) -> Path:
        return self._root

    def learn(self, manifests: Sequence[Manifest]) -> None:
        self._opened.learn(manifests)

    def start(self) -> None:
        self._lock_file = lock_state_dir(self._root)

    def close(self, message: str) -> None:
        self._opened.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._db.close()

    def state_dir_intact(self) -> bool:
        try:
            return (self._root / CATALOG_FILE).stat().st_ino == self._inode
        except OSError:
            return False

    def reset_after_loss(self) -> None:
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
        self._open_records()
        self.start()

    def check_state(self) -> None:
        self._db.check()

    def record_manifests_path(self, path: Path) -> None:
        self._db.set_meta("manifests", str(path.resolve()))
        self._db.set_meta(META_BACKEND, self.name)


def owner_identity(state_dir: str) -> str:
    """Who ``amlops up`` is to Azure ML (the ``amlops-owner`` tag): this machine and state
    directory, so two checkouts never take each other's assets. AMLOPS_AZURE_OWNER wins."""
    root = str(Path(state_dir).resolve())
    if len(root) > 160:
        root = "…" + hashlib.sha256(root.encode()).hexdigest()[:16]
    return f"amlops-up:{socket.gethostname()[:64]}:{root}"


def open_session(backend: str, state_dir: str, manifests: Path) -> UpSession:
    """The backend ``up`` runs against, with the state directory's object records."""
    if backend == "local":
        return UpSession(open_writable(state_dir, manifests))
    config = find_config([manifests])
    options = BackendOptions(
        state_dir=Path(state_dir),
        source_root=files.default_roots([manifests])[0],
        owner=owner_identity(state_dir),
        config=config.workspace,
    )
    try:
        opened = open_backend(backend, options)
    except (ValueError, BackendError) as exc:  # the AMLOPS_AZURE_* settings
        raise common.UsageError(str(exc)) from exc
    return RemoteSession(backend, state_dir, opened)


def last_backend(backend: LocalBackend) -> str:
    """The backend the last ``up`` of this state directory ran."""
    return backend.db.get_meta(META_BACKEND) or "local"
