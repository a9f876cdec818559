"""The local backend's state directory as the commands see it, and what can be wrong with it.

``up`` and ``run`` open it to run things (created if missing); ``status``, ``invoke`` and
``run --path``-less lookups open it read-only, so they work on a folder nobody may write to and
never change it. A file where the folder should be, a folder that cannot be created or written,
a catalog that is not a SQLite database or has a damaged page: each reaches the user as one
message naming the file and saying what to do, with exit code 1. It is the state of this
machine, not a bug of amlops (which exit 2, "internal error", would claim).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

from rich.text import Text

from amlops.backends.local.backend import CATALOG_FILE, DEFAULT_STATE_DIR, LocalBackend
from amlops.backends.local.db import StateError
from amlops.cli import common
from amlops.core import files

P = ParamSpec("P")


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
