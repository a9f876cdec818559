"""MLWorkspace: an Azure ML workspace with the resources it cannot run without."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import (
    applicationinsights,
    containerregistry,
    keyvault,
    machinelearningservices,
    operationalinsights,
    resources,
    storage,
)

from infra import naming
from infra.specs import WorkspaceSpec


@dataclass(frozen=True)
class MLWorkspaceArgs:
    spec: WorkspaceSpec
    subscription_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]


class MLWorkspace(pulumi.ComponentResource):
    """Resource group (or an existing one), storage, key vault, monitoring, registry, workspace."""

    resource_group_name: pulumi.Output[str]
    workspace_name: pulumi.Output[str]
    workspace_id: pulumi.Output[str]
    mlflow_tracking_uri: pulumi.Output[str]
    storage_account_id: pulumi.Output[str]
    key_vault_id: pulumi.Output[str]
    container_registry_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: MLWorkspaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("amlops:infra:MLWorkspace", name, None, opts)
        spec = args.spec
        # Prod data must survive a mistaken `pulumi destroy` or a deleted manifest: protected
        # resources make the engine refuse until someone unprotects them on purpose.
        child = pulumi.ResourceOptions(parent=self, protect=spec.protect)

        if spec.create_resource_group:
            group = resources.ResourceGroup(
                f"{name}-rg",
                resources.ResourceGroupArgs(
                    resource_group_name=spec.resource_group,
                    location=spec.location,
                    tags=spec.tags,
                ),
                opts=child,
            )
            rg_name: pulumi.Input[str] = group.name
        else:
            rg_name = spec.resource_group

        def unique(make: naming.NameFn) -> pulumi.Output[str]:
            return pulumi.Output.from_input(args.subscription_id).apply(
                lambda sub: make(spec.name, spec.resource_group, sub)
            )

        public = spec.public_network_access
        account = storage.StorageAccount(
            f"{name}-st",
            storage.StorageAccountArgs(
                account_name=unique(naming.storage_account_name),
                resource_group_name=rg_name,
                location=spec.location,
                kind="StorageV2",
                sku=storage.SkuArgs(name=spec.storage_sku),
                minimum_tls_version="TLS1_2",
                enable_https_traffic_only=True,
                allow_blob_public_access=False,
                allow_shared_key_access=spec.allow_shared_key_access,
                public_network_access=public,
                tags=spec.tags,
            ),
            opts=child,
        )
        vault = keyvault.Vault(
            f"{name}-kv",
            keyvault.VaultArgs(
                vault_name=unique(naming.key_vault_name),
                resource_group_name=rg_name,
                location=spec.location,
                properties=keyvault.VaultPropertiesArgs(
                    tenant_id=args.tenant_id,
                    sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName.STANDARD),
                    # Access through Azure RBAC, like everything else the platform grants.
                    enable_rbac_authorization=True,
                    # Azure accepts only `true` here and it can never be turned off again, so
                    # the property is left out rather than sent as false.
                    enable_purge_protection=True if spec.purge_protection else None,
                    soft_delete_retention_in_days=spec.soft_delete_retention_days,
                    public_network_access=public,
                ),
                tags=spec.tags,
            ),
            opts=child,
        )
        logs = operationalinsights.Workspace(
            f"{name}-log",
            operationalinsights.WorkspaceArgs(
                workspace_name=naming.log_analytics_name(spec.name),
                resource_group_name=rg_name,
                location=spec.location,
                sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
                retention_in_days=spec.log_retention_days,
                tags=spec.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The keyword form, not ComponentArgs: ComponentArgs' `resource_name` collides with the
        # logical name when the SDK unpacks it (TypeError: multiple values for resource_name).
        insights = applicationinsights.Component(
            f"{name}-appi",
            resource_name_=naming.app_insights_name(spec.name),
            resource_group_name=rg_name,
            location=spec.location,
            kind="web",
            application_type="web",
            # Workspace-based Application Insights; classic mode is retired.
            workspace_resource_id=logs.id,
            ingestion_mode="LogAnalytics",
            # Azure's default is public for both; a private workspace's telemetry is not.
            public_network_access_for_ingestion=public,
            public_network_access_for_query=public,
            tags=spec.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        registry = containerregistry.Registry(
            f"{name}-cr",
            containerregistry.RegistryArgs(
                registry_name=unique(naming.container_registry_name),
                resource_group_name=rg_name,
                location=spec.location,
                sku=containerregistry.SkuArgs(name=spec.registry_sku),
                # Pulls go through the workspace's and the operator's identities (AcrPull).
                admin_user_enabled=False,
                public_network_access=public,
                tags=spec.tags,
            ),
            opts=child,
        )
        managed_network = (
            machinelearningservices.ManagedNetworkSettingsArgs(isolation_mode=spec.isolation_mode)
            if spec.isolation_mode
            else None
        )
        workspace = machinelearningservices.Workspace(
            f"{name}-mlw",
            machinelearningservices.WorkspaceArgs(
                workspace_name=spec.name,
                resource_group_name=rg_name,
                location=spec.location,
                kind="Default",
                friendly_name=spec.display_name,
                description=spec.description,
                sku=machinelearningservices.SkuArgs(
                    name=spec.sku, tier=machinelearningservices.SkuTier.BASIC
                ),
                identity=machinelearningservices.ManagedServiceIdentityArgs(type="SystemAssigned"),
                storage_account=account.id,
                key_vault=vault.id,
                application_insights=insights.id,
                container_registry=registry.id,
                public_network_access=public,
                managed_network=managed_network,
                # Without shared keys the default datastores must authenticate as the
                # workspace's identity, or every upload fails with 403.
                system_datastores_auth_mode=(None if spec.allow_shared_key_access else "identity"),
                v1_legacy_mode=False,
                tags=spec.tags,
            ),
            opts=child,
        )

        self.resource_group_name = pulumi.Output.from_input(rg_name)
        self.workspace_name = workspace.name
        self.workspace_id = workspace.id
        self.mlflow_tracking_uri = workspace.ml_flow_tracking_uri
        self.storage_account_id = account.id
        self.key_vault_id = vault.id
        self.container_registry_id = registry.id
        self.register_outputs(
            {
                "resourceGroupName": self.resource_group_name,
                "workspaceName": self.workspace_name,
                "workspaceId": self.workspace_id,
                "mlflowTrackingUri": self.mlflow_tracking_uri,
                "storageAccountId": self.storage_account_id,
                "keyVaultId": self.key_vault_id,
                "containerRegistryId": self.container_registry_id,
            }
        )
