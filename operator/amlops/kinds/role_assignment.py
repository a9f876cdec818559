"""RoleAssignment: a built-in role granted to a principal on a workspace or one of its computes.

Applied by the Pulumi program (infra/). It belongs to the workspace its scope names: that is
where the grant lives and what names are unique within.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from amlops.kinds.base import Declared, Kind

if TYPE_CHECKING:
    from amlops.core.findings import Finding
    from amlops.core.manifests import Manifest


def _check_scope(m: Manifest, declared: Declared) -> Iterator[Finding]:
    scope = m.spec.get("scope")
    if not isinstance(scope, dict):
        return
    ws = scope.get("workspace")
    if ws not in declared.workspaces:
        yield m.finding(
            ("spec", "scope", "workspace"),
            "ref.scope",
            f"scope names workspace {ws!r}, which is not declared",
        )
        return
    compute = scope.get("compute")
    if isinstance(compute, str) and (ws, compute) not in declared.computes:
        yield m.finding(
            ("spec", "scope", "compute"),
            "ref.scope",
            f"scope names compute {compute!r}, which is not a ComputeCluster of workspace {ws!r}",
        )


KIND = Kind(
    name="RoleAssignment",
    engine="pulumi",
    workspace_path=("spec", "scope", "workspace"),
    references=_check_scope,
)
