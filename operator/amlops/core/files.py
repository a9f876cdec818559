"""Which files a manifest may make amlops read: one containment rule for every driver.

A path a manifest names (``path:``, ``code:``, ``conda_file:``, ``component:``, a pipeline
input's ``path:``) is read, digested and copied into the artifact store, or uploaded to Azure.
Manifests come from pull requests, so such a path must stay inside the **source root**: the Git
checkout the manifests belong to (the top level holding ``.git``, found upward from the
validated paths), else the common folder of the validated paths, or what a driver passes (the
operator's ``AMLOPS_SOURCE_ROOT``). After symlinks are resolved, the path and, for a folder,
every link inside it must land inside the root; only regular files and folders are read; and a
folder is walked with a budget (``amlops.core.limits``), stopping at the first file over it.

Validation turns each refusal into a finding (rule ids below); readers call ``admit`` (or the
cheaper ``contained``) right before they read, and get a ``PathRefusedError``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from amlops.core.limits import Limits, current, env_name, human

RULE_OUTSIDE_ROOT = "files.outside-root"
RULE_SPECIAL = "files.special"
RULE_TOO_LARGE = "files.too-large"
RULE_TOO_MANY_FILES = "files.too-many-files"
RULES = (RULE_OUTSIDE_ROOT, RULE_SPECIAL, RULE_TOO_LARGE, RULE_TOO_MANY_FILES)


class PathRefusedError(ValueError):
    """A path the containment rule refuses. ``rule`` is the finding id; the message says what
    is wrong and what to do (it names paths, never file contents)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def ignored(name: str) -> bool:
    """Names no reader of a folder takes: dot files (``.git``, ``.venv``), byte-code caches.
    Running a scoring script writes ``__pycache__`` next to it; that is not new code."""
    return name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")


def local_target(value: str) -> str:
    """The file system path a local value names: Azure ML also accepts ``file:`` URIs
    (``component: file:./train.yml``), which name the same file as the bare path."""
    if value.startswith("file://"):
        return value[len("file://") :]
    return value.removeprefix("file:")


# -- the source root --------------------------------------------------------------------------


def git_top(start: Path | str) -> Path | None:
    """The nearest folder at or above ``start`` holding ``.git`` (a folder, or a file in a
    worktree or submodule), without following symlinks of ``start`` itself."""
    folder = Path(os.path.abspath(start))
    if not folder.is_dir():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return None


def default_roots(paths: Sequence[Path | str]) -> list[Path]:
    """The source root of each of ``paths``: its Git top level; for the paths in no
    repository, their common folder (a file counts as its folder)."""
    tops = [git_top(p) for p in paths]
    loose = [
        os.path.abspath(p) if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))
        for p, top in zip(paths, tops, strict=True)
        if top is None
    ]
    common = Path(os.path.commonpath(loose)) if loose else None
    return [real(top if top is not None else common or Path.cwd()) for top in tops]


def real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def inside(root: Path, target: Path) -> bool:
    """Both already resolved (``real``)."""
    return target == root or target.is_relative_to(root)


def _outside(what: str, target: Path, root: Path) -> PathRefusedError:
    return PathRefusedError(
        RULE_OUTSIDE_ROOT,
        f"{what} resolves to {target}, outside the source root {root}; paths must stay inside "
        "the repository: move the files into it, or name them relative to the manifest",
    )


def _special(what: str, mode: int) -> PathRefusedError:
    return PathRefusedError(
        RULE_SPECIAL,
        f"{what} is a {kind_of(mode)}, not a regular file or folder; amlops reads only files "
        "and folders: point it at one",
    )


def kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def contained(root: Path | str, path: Path | str, *, what: str | None = None) -> Path:
    """``path`` with its symlinks resolved, when that is inside ``root`` and is a regular file,
    a folder or nothing yet; raises ``PathRefusedError`` otherwise. Cheap (no walk): call it
    before opening a file a manifest names. ``what`` names the path in the error."""
    top = real(root)
    target = real(path)
    label = what or str(path)
    if not inside(top, target):
        raise _outside(label, target, top)
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return target  # missing: the caller says "does not exist" in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _special(label, mode)
    return target


@dataclass
class Tree:
    """What ``admit`` found: how many files and bytes a reader will take."""

    files: int = 0
    bytes: int = 0


def admit(
    root: Path | str, path: Path | str, limits: Limits | None = None, *, what: str | None = None
) -> Path:
    """``contained``, and for a folder, the walk a reader is about to do: every link inside must
    stay in the root, no file may be special, and the files must fit the limits (the walk
    stops at the first one over). Call it before digesting, copying or uploading."""
    target = contained(root, path, what=what)
    measure(real(root), target, limits or current(), what or str(path))
    return target


def measure(root: Path, target: Path, limits: Limits, what: str) -> Tree:
    """Walk ``target`` (resolved, inside ``root``) as a reader would: the names ``ignored``
    leaves out are skipped, links to folders are not followed (links to files are). Raises
    ``PathRefusedError`` at the first entry that breaks a rule."""
    tree = Tree()
    try:
        info = os.stat(target)
    except OSError:
        return tree
    if stat.S_ISREG(info.st_mode):
        _add_file(tree, info.st_size, limits, what, what, single=True)
        return tree
    for entry in scan(target, skip=ignored):
        _visit(root, target, entry, tree, limits, what)
    return tree


def scan(top: Path | str, *, skip: Callable[[str], bool]) -> Iterator[os.DirEntry[str]]:
    """Every entry below the folder ``top`` except the folders it enters, depth first: a name
    ``skip`` matches is left out with all below it, a link to a folder is given, not entered
    (``os.walk``'s default), and an unreadable folder is passed over (its reader reports it)."""
    pending = [os.fspath(top)]
    while pending:
        folder = pending.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                if skip(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    yield entry


def _visit(
    root: Path, top: Path, entry: os.DirEntry[str], tree: Tree, limits: Limits, what: str
) -> None:
    shown = f"{what}/{Path(entry.path).relative_to(top).as_posix()}"
    if entry.is_symlink():
        resolved = real(entry.path)
        if not inside(root, resolved):
            raise _outside(f"{shown} (a symbolic link)", resolved, root)
        try:
            info = os.stat(resolved)
        except OSError:
            return  # dangling: readers skip it
        if stat.S_ISDIR(info.st_mode):
            return  # readers do not follow links to folders (os.walk's default)
    else:
        info = entry.stat(follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode):
        raise _special(shown, info.st_mode)
    _add_file(tree, info.st_size, limits, what, shown, single=False)


def _add_file(
    tree: Tree, size: int, limits: Limits, what: str, shown: str, *, single: bool
) -> None:
    tree.files += 1
    tree.bytes += size
    if size > limits.max_file_bytes:
        raise PathRefusedError(
            RULE_TOO_LARGE,
            f"{shown} is {human(size)}, over the limit of {human(limits.max_file_bytes)} per "
            f"file; raise it with {env_name('max_file_bytes')} if this is intended",
        )
    if single:
        return
    if tree.files > limits.max_tree_files:
        raise PathRefusedError(
            RULE_TOO_MANY_FILES,
            f"{what} holds more than {limits.max_tree_files:,} files (stopped counting there); "
            f"name a smaller folder, or raise {env_name('max_tree_files')} if this is intended",
        )
    if tree.bytes > limits.max_tree_bytes:
        raise PathRefusedError(
            RULE_TOO_LARGE,
            f"{what} holds more than {human(limits.max_tree_bytes)} (stopped counting at "
            f"{human(tree.bytes)}); name a smaller folder, or raise "
            f"{env_name('max_tree_bytes')} if this is intended",
        )


# -- checking what manifests name --------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    resolved: str  # normalised, symlinks as written (what ``Manifest.resolve_path`` gives)
    problem: PathRefusedError | None
    exists: bool


@dataclass
class Checker:
    """Checks the paths of one validation run. Manifests name the same few folders over and
    over (a shared ``score/``), so each (folder, path) is resolved, and walked, once."""

    limits: Limits = field(default_factory=current)
    _seen: dict[tuple[str, Path | None, str, bool], Verdict] = field(default_factory=dict)

    def check(self, file: str, root: Path | None, value: str, *, on_disk: bool = True) -> Verdict:
        """``value`` as written in manifest ``file`` read under source ``root`` (None: the
        file's own folder). ``on_disk`` False (a Git revision that is not checked out) checks
        where the path points, not what is there."""
        folder = os.path.dirname(file)
        key = (folder, root, value, on_disk)
        verdict = self._seen.get(key)
        if verdict is None:
            verdict = self._check(folder, root, value, on_disk)
            self._seen[key] = verdict
        return verdict

    def _check(self, folder: str, root: Path | None, value: str, on_disk: bool) -> Verdict:
        base = os.path.abspath(folder)
        top = root or real(base)
        written = local_target(value)
        resolved = os.path.normpath(os.path.join(base, written))
        if os.path.isabs(written):
            problem: PathRefusedError | None = PathRefusedError(
                RULE_OUTSIDE_ROOT,
                f"{value} is an absolute path; name files relative to the manifest, inside "
                f"the repository (source root {top})",
            )
            return Verdict(resolved, problem, False)
        if not on_disk:
            target = real(resolved)
            problem = None if inside(top, target) else _outside(value, target, top)
            return Verdict(resolved, problem, False)
        try:
            admit(top, resolved, self.limits, what=value)
        except PathRefusedError as exc:
            return Verdict(resolved, exc, True)
        return Verdict(resolved, None, os.path.exists(resolved))


def refused(rules: Iterable[str]) -> bool:
    """Whether any of ``rules`` is one of this module's: the files must not be read further."""
    return any(rule in RULES for rule in rules)
