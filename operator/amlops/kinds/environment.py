"""Environment: an Azure ML environment (image or build, conda file).

Deployments and pipeline steps name it; it is validated and resolved but has no custom resource
of its own (inline environments work in-cluster).
"""

from __future__ import annotations

from amlops.kinds.base import Kind, Part, check_workspace, declare_asset

KIND = Kind(
    name="Environment",
    engine="operator",
    parts=(Part("environment", "load_environment", cli_type="environment", versioned=True),),
    declare=declare_asset("environment", "environments"),
    references=check_workspace,
)
