"""The tree of one commit, materialised read-only for the loader: an artifact.

    artifact = materialise(fetched.mirror, fetched.commit, state_dir, "team-a/platform",
                           path="manifests", ignore=["*.md", "drafts/"])
    artifact.root        # <state>/artifacts/<source>/<sha>/  (what ``path`` holds, nothing else)
    collect(state_dir, "team-a/platform", keep=3)   # the last good 3 stay, the rest go

The files come from the commit's tree objects in the bare mirror (no working clone, no
checkout of anything else): only ``path`` (relative to the repository root; ``""`` is all of
it), minus the ``ignore`` patterns (``.gitignore`` syntax, matched against paths from the
repository root, as Flux's ``spec.ignore``). Submodules are left out. Files are 0444 (0555 when
executable) and folders 0555, written into a temporary folder and renamed into place, so a
reader sees a whole artifact or none.

Refused (``ArtifactError``, reason ``ArtifactRefused``, naming the repository path):

* a symbolic link whose target leaves the artifact (absolute, ``..`` past its root, or through
  another link), checked on the path and again on the written tree;
* more files, a larger file, or more bytes than ``core.limits`` allows (``AMLOPS_MAX_TREE_FILES``,
  ``AMLOPS_MAX_FILE_BYTES``, ``AMLOPS_MAX_TREE_BYTES``), checked from the tree objects before
  anything is written;
* entry names Git itself would refuse (``.``, ``..``, ``.git``, with ``/`` or NUL).

``path`` missing in the commit is reason ``PathNotFound``. Rebuilding the same commit with the
same ``path`` and ``ignore`` reuses the artifact; ``digest`` is stable across rebuilds (sha256 of
the sorted paths, modes and blob ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pathspec
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

from amlops.core import limits as core_limits
from amlops.gitops.fetch import source_dir_name
from amlops.kinds.git_source import is_commit_id

ARTIFACT_REFUSED = "ArtifactRefused"
PATH_NOT_FOUND = "PathNotFound"
DEFAULT_KEEP = 3
_DIR, _LINK, _SUBMODULE = 0o040000, 0o120000, 0o160000


class ArtifactError(Exception):
    """``reason`` is ``ArtifactRefused`` or ``PathNotFound``; ``path`` the repository path."""

    def __init__(self, reason: str, path: str, message: str) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path or '.'}: {message}")


@dataclass(frozen=True)
class Artifact:
    root: Path  # <state>/artifacts/<source>/<sha>/
    commit: str
    path: str  # the repository path it holds ("" for the whole tree)
    files: int
    size: int  # bytes of regular files
    digest: str  # sha256:<hex> of the sorted (path, mode, blob id)


@dataclass(frozen=True)
class _Entry:
    rel: str  # relative to the artifact root
    repo_path: str  # relative to the repository root, for messages
    mode: int
    sha: ObjectID
    size: int


def artifacts_dir(state_dir: Path, source_id: str) -> Path:
    return state_dir / "artifacts" / source_dir_name(source_id)


def materialise(
    mirror: Path,
    commit: str,
    state_dir: Path,
    source_id: str,
    *,
    path: str = "",
    ignore: Sequence[str] = (),
    limits: core_limits.Limits | None = None,
) -> Artifact:
    """The artifact of ``commit`` (in the bare ``mirror``); see the module docstring."""
    if not is_commit_id(commit):
        raise ArtifactError(ARTIFACT_REFUSED, "", f"{commit!r} is not a commit sha")
    bounds = limits or core_limits.current()
    prefix = _normal_path(path)
    spec = pathspec.GitIgnoreSpec.from_lines(list(ignore))
    params = {"path": prefix, "ignore": list(ignore)}
    base = artifacts_dir(state_dir, source_id)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = base / commit
    sidecar = base / f"{commit}.json"

    repo = Repo(str(mirror))
    try:
        entries = list(_entries(repo, ObjectID(commit.encode()), prefix, spec))
        _check_limits(entries, prefix, bounds)
        digest = _digest(entries)
        if target.is_dir() and _read_sidecar(sidecar) == {**params, "digest": digest}:
            os.utime(sidecar)  # the newest good artifact, for collect()
            return _artifact(target, commit, prefix, entries, digest)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{commit[:12]}-", dir=base))
        try:
            _write(repo, entries, tmp)
            for e in entries:  # again: a link checked early may lead through a later one
                if e.mode == _LINK:
                    _check_link(tmp, e)
            _seal(tmp)
            if target.exists():  # rebuilt (another path or ignore): swap, never delete in place
                old = tmp.with_name(f"{tmp.name}-old")  # a .tmp-*: collect() removes a leftover
                target.rename(old)
                tmp.rename(target)
                _remove(old)
            else:
                tmp.rename(target)
        except BaseException:
            _remove(tmp)
            raise
    finally:
        repo.close()
    sidecar.write_text(json.dumps({**params, "digest": digest}), encoding="utf-8")
    return _artifact(target, commit, prefix, entries, digest)


def artifact_dir(state_dir: Path, source_id: str, commit: str) -> Path | None:
    """The finished artifact of ``commit`` if there is one (a lookup: nothing is fetched): its
    folder and its sidecar, written once the folder is in place (``collect`` removes a folder
    without one)."""
    base = artifacts_dir(state_dir, source_id)
    root = base / commit
    finished = root.is_dir() and (base / f"{commit}.json").is_file()
    return root if is_commit_id(commit) and finished else None


def collect(
    state_dir: Path, source_id: str, *, keep: int = DEFAULT_KEEP, pinned: Sequence[str] = ()
) -> list[str]:
    """Remove all but the ``keep`` most recently built or reused artifacts of a source, and
    any half-written one; ``pinned`` commits (the applied revision objects point at) always
    stay. The removed commits."""
    base = artifacts_dir(state_dir, source_id)
    if not base.is_dir():
        return []
    for tmp in base.glob(".tmp-*"):
        _remove(tmp)
    built = sorted(
        (p for p in base.glob("*.json") if (base / p.stem).is_dir()),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    removed: list[str] = []
    for orphan in base.iterdir():  # renamed into place, but its build did not finish
        if (
            orphan.is_dir()
            and not orphan.name.startswith(".")
            and not orphan.with_suffix(".json").exists()
        ):
            _remove(orphan)
            removed.append(orphan.name)
    for sidecar in built[max(keep, 1) :]:
        if sidecar.stem in pinned:
            continue
        _remove(base / sidecar.stem)
        sidecar.unlink(missing_ok=True)
        removed.append(sidecar.stem)
    return removed


# -- reading the tree -----------------------------------------------------------------------


def _normal_path(path: str) -> str:
    raw = path.strip().replace("\\", "/")
    if raw.startswith("/"):
        raise ArtifactError(ARTIFACT_REFUSED, path, "path must be relative to the repository")
    norm = posixpath.normpath(raw) if raw else "."
    if norm == ".." or norm.startswith("../"):
        raise ArtifactError(ARTIFACT_REFUSED, path, "path leaves the repository")
    return "" if norm == "." else norm


def _entries(
    repo: Repo, commit: ObjectID, prefix: str, spec: pathspec.GitIgnoreSpec
) -> Iterator[_Entry]:
    obj = repo[commit]
    if not isinstance(obj, Commit):
        raise ArtifactError(ARTIFACT_REFUSED, "", f"{commit.decode()} is not a commit")
    tree = repo[obj.tree]
    for part in prefix.split("/") if prefix else []:
        assert isinstance(tree, Tree)
        found = [(m, s) for n, m, s in tree.iteritems() if n == part.encode()]
        if not found or found[0][0] != _DIR:
            raise ArtifactError(PATH_NOT_FOUND, prefix, "no such folder in the commit")
        tree = repo[found[0][1]]
    assert isinstance(tree, Tree)
    yield from _walk(repo, tree, "", prefix, spec)


def _walk(
    repo: Repo, tree: Tree, rel: str, prefix: str, spec: pathspec.GitIgnoreSpec
) -> Iterator[_Entry]:
    names: set[str] = set()
    for raw_name, mode, sha in tree.iteritems():
        name = os.fsdecode(raw_name)
        child = f"{rel}/{name}" if rel else name
        repo_path = f"{prefix}/{child}" if prefix else child
        if name in (".", "..", ".git", "") or "/" in name or "\0" in name or name in names:
            # a hand-made tree object can hold what git fsck refuses (a name twice: a link and
            # a folder, so files would be written through the link)
            raise ArtifactError(ARTIFACT_REFUSED, repo_path, "entry name Git would refuse")
        names.add(name)
        if mode == _SUBMODULE:
            continue
        if mode == _DIR:
            if spec.match_file(repo_path + "/"):
                continue
            sub = repo[sha]
            assert isinstance(sub, Tree)
            yield _Entry(child, repo_path, mode, sha, 0)
            yield from _walk(repo, sub, child, prefix, spec)
            continue
        if spec.match_file(repo_path):
            continue
        blob = repo[sha]
        assert isinstance(blob, Blob)
        yield _Entry(child, repo_path, mode, sha, blob.raw_length())


def _check_limits(entries: list[_Entry], prefix: str, bounds: core_limits.Limits) -> None:
    files = [e for e in entries if e.mode != _DIR]
    if len(files) > bounds.max_tree_files:
        raise ArtifactError(
            ARTIFACT_REFUSED,
            prefix,
            f"{len(files)} files, more than AMLOPS_MAX_TREE_FILES={bounds.max_tree_files}",
        )
    total = 0
    for e in files:
        if e.size > bounds.max_file_bytes:
            raise ArtifactError(
                ARTIFACT_REFUSED,
                e.repo_path,
                f"{core_limits.human(e.size)}, more than AMLOPS_MAX_FILE_BYTES="
                f"{core_limits.human(bounds.max_file_bytes)}",
            )
        total += e.size
    if total > bounds.max_tree_bytes:
        raise ArtifactError(
            ARTIFACT_REFUSED,
            prefix,
            f"{core_limits.human(total)}, more than AMLOPS_MAX_TREE_BYTES="
            f"{core_limits.human(bounds.max_tree_bytes)}",
        )


def _digest(entries: list[_Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.rel):
        h.update(f"{e.rel}\0{e.mode:o}\0{e.sha.decode()}\n".encode())
    return f"sha256:{h.hexdigest()}"


# -- writing --------------------------------------------------------------------------------


def _write(repo: Repo, entries: list[_Entry], root: Path) -> None:
    for e in entries:
        dest = root / e.rel
        if e.mode == _DIR:
            dest.mkdir(mode=0o700)
            continue
        blob = repo[e.sha]
        assert isinstance(blob, Blob)
        if e.mode == _LINK:
            target = os.fsdecode(blob.as_raw_string())
            _check_link_text(e, target)
            os.symlink(target, dest)
            _check_link(root, e)  # now, before anything could be written through it
            continue
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            for chunk in blob.as_raw_chunks():
                f.write(chunk)
        if e.mode & 0o111:
            os.chmod(dest, 0o700)  # _seal keeps the executable bit


def _check_link_text(e: _Entry, target: str) -> None:
    """Lexically: the link's target, from its folder, stays in the artifact."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(e.rel), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../") or "\0" in target:
        raise ArtifactError(
            ARTIFACT_REFUSED, e.repo_path, f"symbolic link to {target!r} leaves the tree"
        )


def _check_link(root: Path, e: _Entry) -> None:
    """Physically, once written: a link through another link (``a -> .``, ``b -> a/..``) is
    lexically inside but may resolve outside."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / e.rel)
    if real != real_root and not real.startswith(real_root + os.sep):
        target = os.readlink(root / e.rel)
        raise ArtifactError(
            ARTIFACT_REFUSED, e.repo_path, f"symbolic link to {target!r} leaves the tree"
        )


def _seal(root: Path) -> None:
    """Read-only: files 0444 (0555 executable), folders 0555, the root last."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                os.chmod(p, 0o555 if st.st_mode & 0o100 else 0o444)
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o555)
    os.chmod(root, 0o555)


def _remove(path: Path) -> None:
    """Remove a sealed tree: make its folders writable first."""
    if not path.exists() and not path.is_symlink():
        return
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o700)
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
    shutil.rmtree(path)


def _read_sidecar(sidecar: Path) -> object:
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _artifact(root: Path, commit: str, prefix: str, entries: list[_Entry], digest: str) -> Artifact:
    files = [e for e in entries if e.mode != _DIR]
    size = sum(e.size for e in files if e.mode != _LINK)
    return Artifact(root, commit, prefix, len(files), size, digest)
