"""The program in three steps: load the platform, declare its components, export the outputs.

``load_platform`` is pure (no resource is declared): it runs ``amlops validate``'s check, raises
with its findings before anything is declared when one of them is an error, and translates
what passed. ``declare`` builds the components; ``export`` publishes stack outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_azure_native import authorization

from amlops.core.azure import cluster_resource_name
from amlops.core.findings import Finding
from amlops.core.manifests import INFRA_KINDS
from amlops.core.validate import validate_paths
from infra import naming
from infra.access import Access, AccessArgs
from infra.compute import GpuCluster, GpuClusterArgs
from infra.config import ConfigError, OperatorIdentityConfig, StackConfig
from infra.identity import OperatorIdentity, OperatorIdentityArgs
from infra.specs import ManifestError, Platform, format_finding, translate
from infra.workspace import MLWorkspace, MLWorkspaceArgs

Warn = Callable[[str], None]


def blocking(findings: list[Finding]) -> list[Finding]:
    """Errors that stop this program: on its own kinds, or on a file it cannot attribute.

    A YAML syntax error or an unknown kind could hide a Workspace, so it stops the program
    too. Errors on Model, Pipeline and Endpoint objects do not: the operator applies those
    and reports them as Stalled, and a broken endpoint must not block provisioning a cluster.
    """
    return [f for f in findings if f.is_error and (f.kind is None or f.kind in INFRA_KINDS)]


def load_platform(config: StackConfig, warn: Warn = pulumi.log.warn) -> Platform:
    # The Azure ML SDK loaders only check the operator's kinds; skipping them saves a second
    # of import time and changes no finding this program acts on.
    report = validate_paths([config.manifests], sdk=False)
    stop = blocking(report.findings)
    if stop:
        raise ManifestError(
            stop,
            f"`amlops validate {config.manifests}` reports {len(stop)} error(s) on the "
            "platform manifests; nothing was declared:",
        )
    for finding in report.warnings:
        if finding.kind in INFRA_KINDS:
            warn(format_finding(finding))
    others = len(report.errors)
    if others:
        warn(
            f"{others} error(s) on Model/Pipeline/Endpoint manifests are left to the operator; "
            f"run `amlops validate {config.manifests}` to see them"
        )
    platform = translate(
        report.of_kind(*INFRA_KINDS),
        environment=config.environment,
        commit=config.commit,
        stack_tags=config.tags,
        root=config.project_dir,
    )
    if not platform.workspaces:
        # An empty stack would tell Pulumi to delete everything the stack created before.
        raise ManifestError(
            [
                Finding(
                    str(config.manifests),
                    1,
                    1,
                    "infra.no-workspaces",
                    f"no Workspace manifest has `environment: {config.environment}`; check "
                    f"amlops:environment and amlops:manifests of stack {config.stack!r}",
                )
            ],
            f"stack {config.stack!r} would declare no workspace; nothing was declared:",
        )
    if platform.operator_assignments and config.operator is None:
        names = ", ".join(a.name for a in platform.operator_assignments)
        raise ConfigError(
            f"RoleAssignment(s) {names} grant roles to the operator identity, but "
            f"amlops:operatorIdentity is disabled in Pulumi.{config.stack}.yaml"
        )
    return platform


@dataclass(frozen=True)
class StackOutputs:
    workspace_ids: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    mlflow_tracking_uris: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    compute_ids: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    operator_client_id: pulumi.Output[str] | None = None

    def exports(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "workspaceNames": sorted(self.workspace_ids),
            "workspaceIds": self.workspace_ids,
            "mlflowTrackingUris": self.mlflow_tracking_uris,
            "computeIds": self.compute_ids,
        }
        if self.operator_client_id is not None:
            values["operatorIdentityClientId"] = self.operator_client_id
        return values


def declare(platform: Platform, config: StackConfig) -> StackOutputs:
    client = authorization.get_client_config_output()
    subscription_id = client.subscription_id
    scopes: dict[str, pulumi.Input[str]] = {}
    workspaces: dict[str, MLWorkspace] = {}
    for ws in platform.workspaces:
        component = MLWorkspace(ws.name, MLWorkspaceArgs(ws, subscription_id, client.tenant_id))
        workspaces[ws.name] = component
        scopes[ws.name] = component.workspace_id
        scopes[f"{ws.name}/storage"] = component.storage_account_id
        scopes[f"{ws.name}/keyVault"] = component.key_vault_id
        scopes[f"{ws.name}/containerRegistry"] = component.container_registry_id

    compute_ids: dict[str, pulumi.Output[str]] = {}
    locations = {w.name: w.location for w in platform.workspaces}
    for cluster in platform.clusters:
        parent = workspaces[cluster.workspace]
        gpu = GpuCluster(
            cluster_resource_name(cluster.workspace, cluster.name),
            GpuClusterArgs(
                cluster,
                workspace_name=parent.workspace_name,
                resource_group_name=parent.resource_group_name,
                location=locations[cluster.workspace],
            ),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        compute_ids[cluster.key] = gpu.compute_id
        scopes[f"{cluster.workspace}/computes/{cluster.name}"] = gpu.compute_id

    for ws in platform.workspaces:
        mine = [a for a in platform.assignments if a.scope.workspace == ws.name]
        if mine:
            Access(
                f"{ws.name}-access",
                AccessArgs(mine, scopes, subscription_id),
                opts=pulumi.ResourceOptions(parent=workspaces[ws.name]),
            )

    client_id = None
    if config.operator is not None:
        client_id = _operator_identity(
            platform, config, config.operator, workspaces, scopes, subscription_id
        )

    return StackOutputs(
        workspace_ids={name: w.workspace_id for name, w in workspaces.items()},
        mlflow_tracking_uris={name: w.mlflow_tracking_uri for name, w in workspaces.items()},
        compute_ids=compute_ids,
        operator_client_id=client_id,
    )


def _operator_identity(
    platform: Platform,
    config: StackConfig,
    operator: OperatorIdentityConfig,
    workspaces: dict[str, MLWorkspace],
    scopes: dict[str, pulumi.Input[str]],
    subscription_id: pulumi.Input[str],
) -> pulumi.Output[str]:
    first = platform.workspaces[0]
    group = operator.resource_group or first.resource_group
    # In a group a workspace of this stack creates, the identity must wait for the group.
    creator = next(
        (
            workspaces[w.name]
            for w in platform.workspaces
            if w.create_resource_group and w.resource_group.lower() == group.lower()
        ),
        None,
    )
    identity = OperatorIdentity(
        "operator",
        OperatorIdentityArgs(
            identity_name=config.identity_name,
            resource_group_name=creator.resource_group_name if creator else group,
            location=operator.location or config.location or first.location,
            tags=naming.merge_tags(
                config.tags,
                {
                    naming.TAG_ENVIRONMENT: config.environment,
                    naming.TAG_MANAGED_BY: "amlops",
                    naming.TAG_COMMIT: config.commit,
                },
            ),
            oidc_issuer=operator.oidc_issuer,
            assignments=platform.operator_assignments,
            scopes=scopes,
            subscription_id=subscription_id,
        ),
    )
    return identity.client_id


def export(outputs: StackOutputs) -> None:
    for key, value in outputs.exports().items():
        pulumi.export(key, value)
