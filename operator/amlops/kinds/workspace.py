"""Workspace: an Azure ML workspace and its storage, key vault, app insights and registry.

Applied by the Pulumi program (infra/); it is the scope every other kind names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amlops.kinds.base import Declared, Kind

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest


def _declare(m: Manifest, declared: Declared) -> None:
    declared.workspaces.add(m.name)


KIND = Kind(
    name="Workspace",
    engine="pulumi",
    cli_loader="load_workspace",
    workspace_path=None,
    declare=_declare,
)
