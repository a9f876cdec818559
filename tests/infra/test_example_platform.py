"""The example platform's dev stack: every resource, and the inputs that matter in Azure."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from infra import offline

offline.install("dev")  # before the program is imported: nothing may reach a real engine

from amlops.core.azure import BUILTIN_ROLES  # noqa: E402
from infra import program  # noqa: E402
from infra.offline import MOCK_SUBSCRIPTION_ID, OfflineRun, pulumi_test, run_offline  # noqa: E402
from tests.infra.conftest import ISSUER, by_name, stack_config  # noqa: E402

RG = f"/subscriptions/{MOCK_SUBSCRIPTION_ID}/resourceGroups/rg-mlplatform-dev"
WS_ID = f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/mlw-platform-dev"


@pytest.fixture(scope="module")
def dev() -> OfflineRun:
    config = stack_config("dev")
    return run_offline(program.load_platform(config, warn=pytest.fail), config)


def inputs(run: OfflineRun, name: str) -> dict[str, Any]:
    return by_name(run.resources)[name].inputs


def test_dev_stack_declares_exactly_the_platform(dev: OfflineRun) -> None:
    declared = {(r.type.rsplit(":", 1)[-1], r.name, r.parent) for r in dev.resources}
    ws = "mlw-platform-dev"
    assert declared == {
        ("MLWorkspace", ws, None),
        ("ResourceGroup", f"{ws}-rg", ws),
        ("StorageAccount", f"{ws}-st", ws),
        ("Vault", f"{ws}-kv", ws),
        ("Workspace", f"{ws}-log", ws),  # Log Analytics
        ("Component", f"{ws}-appi", ws),
        ("Registry", f"{ws}-cr", ws),
        ("Workspace", f"{ws}-mlw", ws),  # Azure ML
        ("GpuCluster", f"{ws}-gpu-a100", ws),
        ("Compute", f"{ws}-gpu-a100-compute", f"{ws}-gpu-a100"),
        ("GpuCluster", f"{ws}-gpu-t4", ws),
        ("Compute", f"{ws}-gpu-t4-compute", f"{ws}-gpu-t4"),
        ("Access", f"{ws}-access", ws),
        ("RoleAssignment", f"{ws}-access-data-scientists-dev", f"{ws}-access"),
        ("RoleAssignment", f"{ws}-access-data-scientists-dev-a100", f"{ws}-access"),
        ("OperatorIdentity", "operator", None),
        ("UserAssignedIdentity", "operator-identity", "operator"),
        ("FederatedIdentityCredential", "operator-aks", "operator"),
        ("RoleAssignment", "operator-mlw-platform-dev-operator-dev", "operator"),
        ("RoleAssignment", "operator-mlw-platform-dev-operator-dev-acr", "operator"),
    }
    assert dev.duplicate_urns == []


def test_storage_is_private_to_identities(dev: OfflineRun) -> None:
    st = inputs(dev, "mlw-platform-dev-st")
    assert st["sku"] == {"name": "Standard_LRS"}
    assert st["kind"] == "StorageV2"
    assert st["minimumTlsVersion"] == "TLS1_2"
    assert st["allowBlobPublicAccess"] is False
    assert st["allowSharedKeyAccess"] is False
    assert st["enableHttpsTrafficOnly"] is True
    assert st["resourceGroupName"] == "rg-mlplatform-dev"
    # 3-24 lower-case alphanumerics: Azure's rule for storage account names.
    assert st["accountName"].isalnum() and st["accountName"].islower()
    assert 3 <= len(st["accountName"]) <= 24


def test_key_vault_uses_rbac_and_no_purge_protection_in_dev(dev: OfflineRun) -> None:
    props = inputs(dev, "mlw-platform-dev-kv")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert "enablePurgeProtection" not in props  # Azure rejects an explicit false
    assert props["softDeleteRetentionInDays"] == 7
    assert props["sku"] == {"family": "A", "name": "standard"}
    assert props["tenantId"] == offline.MOCK_TENANT_ID


def test_registry_and_monitoring(dev: OfflineRun) -> None:
    cr = inputs(dev, "mlw-platform-dev-cr")
    assert cr["adminUserEnabled"] is False
    assert cr["sku"] == {"name": "Standard"}
    log = inputs(dev, "mlw-platform-dev-log")
    assert log["sku"] == {"name": "PerGB2018"}
    assert log["retentionInDays"] == 30
    appi = inputs(dev, "mlw-platform-dev-appi")
    assert appi["workspaceResourceId"].endswith(
        "/providers/Microsoft.OperationalInsights/workspaces/log-mlw-platform-dev"
    )
    assert appi["ingestionMode"] == "LogAnalytics"


def test_workspace_wires_its_dependencies_and_network(dev: OfflineRun) -> None:
    mlw = inputs(dev, "mlw-platform-dev-mlw")
    assert mlw["workspaceName"] == "mlw-platform-dev"
    assert mlw["friendlyName"] == "ML platform (dev)"
    assert mlw["identity"] == {"type": "SystemAssigned"}
    assert mlw["sku"] == {"name": "Basic", "tier": "Basic"}
    assert mlw["publicNetworkAccess"] == "Enabled"
    assert mlw["managedNetwork"]["isolationMode"] == "AllowInternetOutbound"
    assert mlw["systemDatastoresAuthMode"] == "identity"
    assert mlw["storageAccount"].endswith(inputs(dev, "mlw-platform-dev-st")["accountName"])
    assert mlw["keyVault"].endswith(inputs(dev, "mlw-platform-dev-kv")["vaultName"])
    assert mlw["containerRegistry"].endswith(inputs(dev, "mlw-platform-dev-cr")["registryName"])
    assert mlw["applicationInsights"].endswith("/components/appi-mlw-platform-dev")
    deps = by_name(dev.resources)["mlw-platform-dev-mlw"].dependencies
    assert set(deps) >= {
        "mlw-platform-dev-st",
        "mlw-platform-dev-kv",
        "mlw-platform-dev-cr",
        "mlw-platform-dev-appi",
    }


def test_every_azure_resource_is_tagged_with_commit_and_manifest(dev: OfflineRun) -> None:
    tagged = [r for r in dev.resources if r.custom and "tags" in r.inputs]
    assert len(tagged) == 10  # rg, st, kv, log, appi, cr, mlw, 2 computes, identity
    for r in tagged:
        assert r.inputs["tags"]["amlops-commit"] == "0123456789abcdef", r.name
        assert r.inputs["tags"]["environment"] == "dev", r.name
        assert r.inputs["tags"]["platform"] == "ml", r.name  # the stack's tags
    ws_tags = inputs(dev, "mlw-platform-dev-mlw")["tags"]
    assert ws_tags["amlops-manifest"] == "manifests/platform/workspaces.yaml"
    assert ws_tags["owner"] == "ml-platform@contoso.com"
    compute_tags = inputs(dev, "mlw-platform-dev-gpu-a100-compute")["tags"]
    assert compute_tags["amlops-manifest"] == "manifests/platform/compute.yaml"


def test_gpu_clusters_scale_settings_and_hardening(dev: OfflineRun) -> None:
    a100 = inputs(dev, "mlw-platform-dev-gpu-a100-compute")
    assert a100["computeName"] == "gpu-a100"
    assert a100["workspaceName"] == "mlw-platform-dev"
    assert a100["identity"] == {"type": "SystemAssigned"}
    # camelCase on the wire proves the typed AmlComputeArgs were used: a plain dict in this
    # union-typed property would arrive with its snake_case keys, which Azure ignores.
    props = a100["properties"]
    assert props["computeType"] == "AmlCompute"
    assert props["disableLocalAuth"] is True
    assert props["properties"] == {
        "vmSize": "Standard_NC24ads_A100_v4",
        "vmPriority": "LowPriority",
        "osType": "Linux",
        "remoteLoginPortPublicAccess": "Disabled",
        "enableNodePublicIp": False,  # the workspace has a managed network
        "scaleSettings": {
            "minNodeCount": 0,
            "maxNodeCount": 2,
            "nodeIdleTimeBeforeScaleDown": "PT30M",
        },
    }
    t4 = inputs(dev, "mlw-platform-dev-gpu-t4-compute")["properties"]["properties"]
    assert t4["vmPriority"] == "Dedicated"
    assert t4["scaleSettings"] == {
        "minNodeCount": 0,
        "maxNodeCount": 4,
        "nodeIdleTimeBeforeScaleDown": "PT15M",
    }


def role_definition(name: str) -> str:
    return (
        f"/subscriptions/{MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{BUILTIN_ROLES[name]}"
    )


def test_people_get_built_in_roles_on_the_right_scopes(dev: OfflineRun) -> None:
    ws_grant = inputs(dev, "mlw-platform-dev-access-data-scientists-dev")
    assert ws_grant["roleDefinitionId"] == role_definition("AzureML Data Scientist")
    assert ws_grant["roleDefinitionId"].endswith("f6c7c914-8db3-469d-8ca1-694a8f32e121")
    assert ws_grant["principalId"] == "6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11"
    assert ws_grant["principalType"] == "Group"
    assert ws_grant["scope"] == WS_ID
    compute_grant = inputs(dev, "mlw-platform-dev-access-data-scientists-dev-a100")
    assert compute_grant["roleDefinitionId"] == role_definition("AzureML Compute Operator")
    assert compute_grant["scope"] == f"{WS_ID}/computes/gpu-a100"


def test_operator_identity_holds_exactly_its_declared_grants(dev: OfflineRun) -> None:
    identity = by_name(dev.resources)["operator-identity"]
    assert identity.inputs["resourceName"] == "id-amlops-operator-dev"
    assert identity.inputs["resourceGroupName"] == "rg-mlplatform-dev"
    assert "mlw-platform-dev-rg" in identity.dependencies  # waits for the group it lives in
    grants = [
        r for r in dev.resources if r.parent == "operator" and r.type.endswith("RoleAssignment")
    ]
    assert sorted(r.name for r in grants) == [
        "operator-mlw-platform-dev-operator-dev",
        "operator-mlw-platform-dev-operator-dev-acr",
    ]
    principal = offline.mock_guid(
        f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-amlops-operator-dev",
        "principal",
    )
    for grant in grants:
        assert grant.inputs["principalId"] == principal
        assert grant.inputs["principalType"] == "ServicePrincipal"
    acr = inputs(dev, "operator-mlw-platform-dev-operator-dev-acr")
    assert acr["roleDefinitionId"] == role_definition("AcrPull")
    assert acr["scope"].endswith(
        f"/registries/{inputs(dev, 'mlw-platform-dev-cr')['registryName']}"
    )
    assert inputs(dev, "operator-mlw-platform-dev-operator-dev")["scope"] == WS_ID


def test_federated_credential_trusts_the_operator_service_account(dev: OfflineRun) -> None:
    fic = inputs(dev, "operator-aks")
    assert fic["issuer"] == ISSUER
    assert fic["subject"] == "system:serviceaccount:amlops-system:amlops-operator"
    assert fic["audiences"] == ["api://AzureADTokenExchange"]
    assert fic["resourceName"] == "id-amlops-operator-dev"


def test_stack_outputs(dev: OfflineRun) -> None:
    assert dev.outputs["workspaceNames"] == ["mlw-platform-dev"]
    assert dev.outputs["workspaceIds"] == {"mlw-platform-dev": WS_ID}
    assert dev.outputs["mlflowTrackingUris"] == {
        "mlw-platform-dev": f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{WS_ID}"
    }
    assert dev.outputs["computeIds"] == {
        "mlw-platform-dev/gpu-a100": f"{WS_ID}/computes/gpu-a100",
        "mlw-platform-dev/gpu-t4": f"{WS_ID}/computes/gpu-t4",
    }
    assert dev.outputs["operatorIdentityClientId"]


@pulumi_test
def test_component_outputs_resolve_to_the_declared_resources() -> pulumi.Output[None]:
    config = stack_config("dev")
    outputs = program.declare(program.load_platform(config, warn=pytest.fail), config)

    def check(values: list[Any]) -> None:
        ws_id, uri, a100, client_id = values
        assert ws_id == WS_ID
        assert uri.startswith("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/")
        assert uri.endswith("/workspaces/mlw-platform-dev")
        assert a100 == f"{WS_ID}/computes/gpu-a100"
        assert len(client_id) == 36

    assert outputs.operator_client_id is not None
    return pulumi.Output.all(
        outputs.workspace_ids["mlw-platform-dev"],
        outputs.mlflow_tracking_uris["mlw-platform-dev"],
        outputs.compute_ids["mlw-platform-dev/gpu-a100"],
        outputs.operator_client_id,
    ).apply(check)
