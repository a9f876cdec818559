"""Provenance: which Git commit and manifest made an asset (DESIGN: every asset is tagged).

One set of tag keys for every driver: the Pulumi program tags Azure resources with them, and
``amlops up`` and the Kopf handlers tag model versions, pipeline runs, endpoints and
deployments with them. Azure resource tag names cannot contain ``/``, so the keys are
``amlops-...`` rather than ``amlops.io/...`` (those stay for Kubernetes annotations).

``Provenance`` finds, for a manifest file, the commit of its checkout and its path from the
repository top. Git is asked once per repository (``rev-parse HEAD``, ``status``) and the
answers are kept for the life of the object: a driver makes one per reconcile pass, so a new
commit is seen on the next pass without asking Git again for every manifest of this one.

A CI system that builds a commit without a usable ``.git`` (an exported tree, a container
build context) names the commit in a variable instead (``COMMIT_ENV_VARS``): the Pulumi
program reads it for its one stack-wide commit, ``Provenance`` for files outside a checkout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TAG_COMMIT = "amlops-commit"
TAG_MANIFEST = "amlops-manifest"
TAG_OBJECT = "amlops-object"  # the Kubernetes object (namespace/name) an asset was made for
TAG_PIPELINE = "amlops-pipeline"
TAG_TRIGGER = "amlops-trigger"
TAG_RUN = "amlops-run"  # on a model version a pipeline run registered

DIRTY_SUFFIX = "-dirty"
# Checked in this order; AMLOPS_COMMIT first, so a user can always say which commit it was.
COMMIT_ENV_VARS = ("AMLOPS_COMMIT", "GITHUB_SHA", "BUILD_SOURCEVERSION", "CI_COMMIT_SHA")
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Origin:
    """Where a manifest comes from: ``commit`` is None outside a Git checkout."""

    manifest: str  # relative to the repository top (POSIX), else the path as given
    commit: str | None = None

    def tags(self) -> dict[str, str]:
        tags = {TAG_MANIFEST: self.manifest}
        if self.commit:
            tags[TAG_COMMIT] = self.commit
        return tags


@dataclass(frozen=True)
class _Repo:
    top: Path
    head: str | None  # None: a repository without a commit yet
    changed: frozenset[str]  # paths relative to top with uncommitted changes (or untracked)


def commit_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The commit a CI system says it is building (``COMMIT_ENV_VARS``), if any."""
    env = os.environ if env is None else env
    return next((env[var] for var in COMMIT_ENV_VARS if env.get(var)), None)


def checkout_commit(directory: Path, env: Mapping[str, str] | None = None) -> str | None:
    """The one commit a whole checkout is built from: what CI says first (it also knows a
    checkout without ``.git``), else ``git rev-parse HEAD``; None when neither knows."""
    return commit_from_env(env) or _git(directory, "rev-parse", "HEAD")


def origin_in(file: str | os.PathLike[str], top: Path | None, commit: str | None) -> Origin:
    """``file`` as a driver that knows its tree and commit up front names it (the Pulumi
    program: the project directory, the stack's commit): its path from ``top``, else as given."""
    if top is None:
        return Origin(str(file), commit)
    path = _as_listed(file)
    top = top.resolve()
    if not path.is_relative_to(top):
        return Origin(str(file), commit)
    return Origin(path.relative_to(top).as_posix(), commit)


def _as_listed(file: str | os.PathLike[str]) -> Path:
    """The absolute path with its folder resolved (a symlinked /tmp), as Git reports a
    checkout's top; the file itself not: a symlinked manifest is tagged with its own path."""
    given = Path(os.path.abspath(file))
    return given.parent.resolve() / given.name


class Provenance:
    """Looks manifests up in their Git checkouts; caches per directory and per repository.

    A file outside any checkout gets the commit CI names (``commit_from_env``), if any.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._tops: dict[Path, Path | None] = {}
        self._repos: dict[Path, _Repo] = {}
        self._ci_commit = commit_from_env(env)

    def origin(self, file: str | os.PathLike[str]) -> Origin:
        path = _as_listed(file)
        repo = self._repo(path.parent)
        if repo is None or not path.is_relative_to(repo.top):
            return Origin(str(file), self._ci_commit)
        relative = path.relative_to(repo.top).as_posix()
        commit = repo.head
        if commit and relative in repo.changed:
            commit += DIRTY_SUFFIX
        return Origin(relative, commit)

    def tags(self, file: str | os.PathLike[str]) -> dict[str, str]:
        return self.origin(file).tags()

    def _repo(self, directory: Path) -> _Repo | None:
        if directory not in self._tops:
            out = _git(directory, "rev-parse", "--show-toplevel")
            self._tops[directory] = Path(out).resolve() if out else None
        top = self._tops[directory]
        if top is None:
            return None
        if top not in self._repos:
            self._repos[top] = _Repo(top, _git(top, "rev-parse", "HEAD"), _changed(top))
        return self._repos[top]


def files_commit(path: str | os.PathLike[str]) -> str | None:
    """The commit the files at ``path`` (a file or a folder) are, asked of Git now: the HEAD of
    the checkout holding them, with ``-dirty`` when any of them differs from it (or is
    untracked); None outside a checkout. An asset made from files records this, not the commit
    its object was last applied from: files change under an unchanged manifest (a new commit
    that only touched them, or an edit not committed yet)."""
    target = _as_listed(path)
    where = target if target.is_dir() else target.parent
    head = _git(where, "rev-parse", "HEAD")
    if head is None:
        return None
    # after `--`, relative to `where` and literal: a name cannot be read as an option or
    # as pathspec magic
    relative = "." if where == target else target.name
    status = _git(
        where,
        "--literal-pathspecs",
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=all",
        "--",
        relative,
        strip=False,
    )
    return head + DIRTY_SUFFIX if status else head


def _changed(top: Path) -> frozenset[str]:
    """``git status --porcelain`` once for the whole checkout, rather than once per file."""
    out = _git(top, "status", "--porcelain", "-z", "--untracked-files=all", strip=False)
    if not out:
        return frozenset()
    paths: set[str] = set()
    entries = iter(out.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its original path
            paths.add(next(entries, ""))
    return frozenset(paths)


# The files asked about come from a repository (a GitSource's artifact, a pull request's
# checkout): a folder in it laid out as a bare repository would be found by Git's discovery, and
# its config could name commands (core.fsmonitor, hooks) that `git status` runs. Command-line
# config is protected: it overrides the repository's and may refuse implicit bare ones.
_HARDENED = (
    "-c",
    "safe.bareRepository=explicit",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
)


def _git(where: Path, *args: str, strip: bool = True) -> str | None:
    """Git's output, or None when Git is missing, fails, or ``where`` is not a checkout."""
    try:
        proc = subprocess.run(
            # no optional locks: a background `up` must not take index.lock from the user's git
            ["git", "--no-optional-locks", *_HARDENED, "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() if strip else proc.stdout
