"""ComputeCluster: an Azure ML compute cluster (GPU VM size, instances, idle scale-down).

Applied by the Pulumi program (infra/); pipelines name it as their compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amlops.kinds.base import Declared, Kind, check_workspace

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest


def _declare(m: Manifest, declared: Declared) -> None:
    declared.computes.add((m.workspace or "", m.name))


KIND = Kind(
    name="ComputeCluster",
    engine="pulumi",
    cli_loader="load_compute",
    declare=_declare,
    references=check_workspace,
)
