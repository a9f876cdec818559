"""The sha256 of a file or a folder of files: what "the same artifacts" means for every backend
and for the reconcilers, which fingerprint code folders with it (hence in the core).

A folder's digest covers each file's relative path, executable bit and content, so renaming or
editing a file changes it and touching a timestamp does not. Python byte-code caches and dot
files are left out: running a scoring script writes ``__pycache__`` next to it, and that must
not look like a new version of the code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from amlops.core.files import ignored

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "/"-separated
    sha256: str
    size: int
    executable: bool


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_entries(root: Path) -> list[Entry]:
    """Every file under ``root`` (or ``root`` itself when it is a file), sorted by path."""
    if root.is_file():
        return [_entry(root, root.name)]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist")
    entries: list[Entry] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not ignored(d))
        for name in sorted(files):
            if ignored(name):
                continue
            path = Path(folder) / name
            if path.is_file():  # skips sockets, fifos and dangling links
                entries.append(_entry(path, path.relative_to(root).as_posix()))
    return sorted(entries, key=lambda e: e.path)


def _entry(path: Path, rel: str) -> Entry:
    stat = path.stat()
    return Entry(rel, file_sha256(path), stat.st_size, bool(stat.st_mode & 0o111))


def entries_digest(entries: list[Entry]) -> str:
    listing = "".join(
        f"{e.sha256} {'x' if e.executable else '-'} {e.path}\n" for e in entries
    ).encode()
    return "sha256:" + hashlib.sha256(listing).hexdigest()


def tree_digest(root: Path) -> str:
    """``sha256:<hex>`` of a file or folder; raises FileNotFoundError when it does not exist."""
    return entries_digest(tree_entries(root))
