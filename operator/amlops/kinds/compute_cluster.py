"""ComputeCluster: an Azure ML compute cluster (GPU VM size, instances, idle scale-down).

Applied by the Pulumi program (infra/); pipelines name it as their compute.
"""

from __future__ import annotations

from amlops.kinds.base import Kind, check_workspace

KIND = Kind(
    name="ComputeCluster",
    engine="pulumi",
    cli_loader="load_compute",
    declare=lambda m, declared: declared.computes.add((m.workspace or "", m.name)),
    references=check_workspace,
)
