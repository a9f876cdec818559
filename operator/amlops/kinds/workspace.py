"""Workspace: an Azure ML workspace and its storage, key vault, app insights and registry.

Applied by the Pulumi program (infra/); it is the scope every other kind names.
"""

from __future__ import annotations

from amlops.kinds.base import Kind

KIND = Kind(
    name="Workspace",
    engine="pulumi",
    cli_loader="load_workspace",
    workspace_path=None,
    declare=lambda m, declared: declared.workspaces.add(m.name),
)
