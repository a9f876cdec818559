"""What ``amlops validate`` reads and what it reports: the repository, and the named files.

Pre-commit hooks and CI jobs that check changed files name files, not the repository; a
deployment alone then has no endpoint and a model no workspace. So when every path is a file,
the whole repository is validated (every reference resolves as it will after the merge) and
only the findings in the named files are reported. Folders are validated as they are, alone,
as before: ``validate manifests/platform extra.yaml`` still means exactly those.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from amlops.core.config import repository_root as repository_root
from amlops.core.manifests import iter_yaml_files
from amlops.core.validate import Report


@dataclass(frozen=True)
class Targets:
    """``read``: the paths to validate; ``only``: the files to report (None: everything)."""

    read: list[str]
    only: frozenset[str] | None = None

    def report(self, report: Report) -> Report:
        if self.only is None:
            return report
        only = self.only
        return Report(
            # A manifest can be written across files (an endpoint and its deployment files).
            manifests=[
                m for m in report.manifests if any(_key(s.doc.file) in only for s in m.segments)
            ],
            findings=[f for f in report.findings if _key(f.file) in only],
            files=len(only),
            skipped=report.skipped,
        )


def _key(path: str) -> str:
    return os.path.abspath(path)


def targets(paths: Sequence[str]) -> Targets:
    if not paths:
        return Targets([str(repository_root(Path.cwd()))])
    if not all(os.path.isfile(p) for p in paths):
        return Targets(list(paths))
    roots = {repository_root(p) for p in paths}
    scanned = {_key(str(p)) for p in iter_yaml_files(sorted(map(str, roots)))}
    # A named file the folder scan skips (a hidden folder, another suffix) is read as well.
    extra = [p for p in paths if _key(p) not in scanned]
    return Targets(
        [str(root) for root in sorted(roots)] + extra,
        frozenset(map(_key, paths)),
    )
