"""A content-addressed artifact store: files kept once by sha256, trees as listings of them.

``objects/ab/abcd...`` holds each distinct file once, read-only; ``trees/<hex>.json`` lists a
tree's files. Putting a tree that is already stored copies nothing. A tree is materialised as
a folder of hard links (a copy when the store is on another file system), which is what a
scoring server or a pipeline step gets as its model folder. Every write goes to a temporary
name first and is renamed into place, so a crash never leaves a half-written object or tree.

Everything is owner-only (files 0400, 0500 when executable; folders 0700) whatever mode the
source file had: a file only its owner could read must not become readable by others by being
stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from amlops.core import files
from amlops.core.digest import Entry, entries_digest, tree_entries

# an object is shared by hard links between trees, so it is never writable; executable ones
# keep the owner's execute bit (set by ``materialize`` on the shared inode)
_OBJECT_MODE = 0o400
_EXECUTABLE_MODE = 0o500
_FOLDER_MODE = 0o700


class ArtifactChangedError(OSError):
    """A file changed between being digested and being copied into the store."""


def make_folders(path: Path) -> None:
    """``mkdir -p`` where every folder made is owner-only (``Path.mkdir(parents=True, mode=)``
    gives the mode to the last folder only)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=_FOLDER_MODE)
        except FileExistsError:  # made by a parallel writer: fine, as long as it is a folder
            if not folder.is_dir():
                raise


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects = root / "objects"
        self._trees = root / "trees"

    def _object(self, sha: str) -> Path:
        return self._objects / sha[:2] / sha

    def _tree_file(self, digest: str) -> Path:
        return self._trees / (digest.removeprefix("sha256:") + ".json")

    def has_tree(self, digest: str) -> bool:
        return self._tree_file(digest).is_file()

    def put_tree(self, src: Path, *, root: Path | None = None) -> str:
        """Store the file or folder ``src``; return its digest (see amlops.core.digest).
        With ``root`` (``src`` was named by a manifest), ``src`` and every link in it must stay
        inside ``root`` (the core's containment rule, checked again right before reading);
        raises ``amlops.core.files.PathRefusedError`` otherwise."""
        if root is not None:
            files.admit(root, src)
        entries = tree_entries(src)
        digest = entries_digest(entries)
        if self.has_tree(digest) and all(self._object(e.sha256).is_file() for e in entries):
            return digest
        for entry in entries:
            source = src if src.is_file() else src / entry.path
            self._put_object(source, entry.sha256)
        listing = [
            {"path": e.path, "sha256": e.sha256, "size": e.size, "executable": e.executable}
            for e in entries
        ]
        _atomic_write(self._tree_file(digest), json.dumps(listing, indent=1).encode())
        return digest

    def _put_object(self, source: Path, sha: str) -> None:
        target = self._object(sha)
        if target.is_file():
            return
        make_folders(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            # Hash while copying: a file edited since it was digested must not be stored
            # under the old digest.
            digest = hashlib.sha256()
            with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != sha:
                raise ArtifactChangedError(f"{source} changed while it was being stored")
            os.chmod(tmp, _OBJECT_MODE)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def entries(self, digest: str) -> list[Entry]:
        data = json.loads(self._tree_file(digest).read_text())
        return [Entry(d["path"], d["sha256"], d["size"], d["executable"]) for d in data]

    def materialize(self, digest: str, dest: Path) -> None:
        """Make ``dest`` a folder holding the tree; a no-op when it already exists."""
        if dest.is_dir():
            return
        make_folders(dest.parent)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))  # made 0700
        try:
            for entry in self.entries(digest):
                target = tmp / entry.path
                make_folders(target.parent)
                try:
                    os.link(self._object(entry.sha256), target)
                except OSError:
                    shutil.copyfile(self._object(entry.sha256), target)
                    os.chmod(target, _OBJECT_MODE)
                if entry.executable:
                    os.chmod(target, _EXECUTABLE_MODE)
            os.replace(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():  # losing a race with another writer of the same tree is fine
                raise


def _atomic_write(path: Path, data: bytes) -> None:
    make_folders(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
