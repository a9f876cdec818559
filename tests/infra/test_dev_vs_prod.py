"""What changes between the dev and prod stacks of the same repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import offline

offline.install("prod")

from infra import program  # noqa: E402
from infra.offline import OfflineRun, run_offline  # noqa: E402
from tests.infra.conftest import by_name, stack_config  # noqa: E402


def run(environment: str) -> OfflineRun:
    config = stack_config(environment)
    return run_offline(program.load_platform(config, warn=pytest.fail), config)


@pytest.fixture(scope="module")
def dev() -> OfflineRun:
    return run("dev")


@pytest.fixture(scope="module")
def prod() -> OfflineRun:
    return run("prod")


def test_each_stack_declares_only_its_environment(dev: OfflineRun, prod: OfflineRun) -> None:
    assert dev.outputs["workspaceNames"] == ["mlw-platform-dev"]
    assert prod.outputs["workspaceNames"] == ["mlw-platform-prod"]
    assert sorted(prod.outputs["computeIds"]) == ["mlw-platform-prod/gpu-a100"]
    prod_grants = sorted(r.name for r in prod.resources if r.type.endswith("RoleAssignment"))
    assert prod_grants == [
        "mlw-platform-prod-access-data-scientists-prod-reader",
        "operator-mlw-platform-prod-operator-prod",
    ]
    assert not any("dev" in r.name for r in prod.resources)
    assert len(dev.resources) == 20
    assert len(prod.resources) == 16


def test_prod_protects_the_resources_that_hold_data(dev: OfflineRun, prod: OfflineRun) -> None:
    protected = {r.name for r in prod.resources if r.protect}
    assert protected == {
        f"mlw-platform-prod-{suffix}" for suffix in ("rg", "st", "kv", "cr", "mlw")
    }
    assert not [r.name for r in dev.resources if r.protect]


def test_prod_key_vault_has_purge_protection(dev: OfflineRun, prod: OfflineRun) -> None:
    prod_kv = by_name(prod.resources)["mlw-platform-prod-kv"].inputs["properties"]
    dev_kv = by_name(dev.resources)["mlw-platform-dev-kv"].inputs["properties"]
    assert prod_kv["enablePurgeProtection"] is True
    assert prod_kv["softDeleteRetentionInDays"] == 90
    assert "enablePurgeProtection" not in dev_kv
    assert dev_kv["softDeleteRetentionInDays"] == 7


def test_prod_is_private_and_isolated(dev: OfflineRun, prod: OfflineRun) -> None:
    res = by_name(prod.resources)
    for name in ("mlw", "st", "cr"):
        assert res[f"mlw-platform-prod-{name}"].inputs["publicNetworkAccess"] == "Disabled", name
    assert res["mlw-platform-prod-kv"].inputs["properties"]["publicNetworkAccess"] == "Disabled"
    # Telemetry too: Azure's default for Application Insights is public ingestion and query.
    appi = res["mlw-platform-prod-appi"].inputs
    assert appi["publicNetworkAccessForIngestion"] == "Disabled"
    assert appi["publicNetworkAccessForQuery"] == "Disabled"
    assert res["mlw-platform-prod-mlw"].inputs["managedNetwork"]["isolationMode"] == (
        "AllowOnlyApprovedOutbound"
    )
    assert res["mlw-platform-prod-cr"].inputs["sku"] == {"name": "Premium"}
    assert res["mlw-platform-prod-st"].inputs["sku"] == {"name": "Standard_ZRS"}
    assert res["mlw-platform-prod-log"].inputs["retentionInDays"] == 90
    dev_res = by_name(dev.resources)
    assert dev_res["mlw-platform-dev-mlw"].inputs["publicNetworkAccess"] == "Enabled"
    dev_appi = dev_res["mlw-platform-dev-appi"].inputs
    assert dev_appi["publicNetworkAccessForIngestion"] == "Enabled"
    assert dev_appi["publicNetworkAccessForQuery"] == "Enabled"
    assert dev_res["mlw-platform-dev-cr"].inputs["sku"] == {"name": "Standard"}
    assert dev_res["mlw-platform-dev-log"].inputs["retentionInDays"] == 30


def test_prod_cluster_is_dedicated_and_has_no_public_ip(prod: OfflineRun) -> None:
    props = by_name(prod.resources)["mlw-platform-prod-gpu-a100-compute"].inputs["properties"]
    assert props["properties"]["vmPriority"] == "Dedicated"
    assert props["properties"]["enableNodePublicIp"] is False
    assert props["properties"]["scaleSettings"]["maxNodeCount"] == 4


def test_prod_operator_identity_lives_in_the_prod_group(prod: OfflineRun) -> None:
    identity = by_name(prod.resources)["operator-identity"].inputs
    assert identity["resourceName"] == "id-amlops-operator-prod"
    assert identity["resourceGroupName"] == "rg-mlplatform-prod"
    assert identity["tags"]["environment"] == "prod"


def test_operator_grants_in_many_workspaces_get_distinct_names(tmp_path: Path) -> None:
    # Grant names are unique per workspace only: two workspaces may both name theirs
    # `operator`, and the real engine rejects a duplicate URN half-way through an update.
    docs = []
    for ws in ("mlw-one", "mlw-two"):
        docs.append(
            f"apiVersion: amlops.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\n"
            f"spec: {{environment: dev, location: westeurope, resourceGroup: rg-{ws},\n"
            "  storage: {allowSharedKeyAccess: false},\n"
            "  tags: {owner: team@contoso.com, cost-center: '4711'}}\n"
        )
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: RoleAssignment\nmetadata: {name: operator}\n"
            "spec: {principal: {operatorIdentity: true}, role: Reader,\n"
            f"  scope: {{workspace: {ws}}}}}\n"
        )
    (tmp_path / "platform.yaml").write_text("---\n".join(docs), encoding="utf-8")
    config = stack_config("dev", tmp_path)
    result = run_offline(program.load_platform(config, warn=pytest.fail), config)
    assert result.duplicate_urns == []
    grants = sorted(r.name for r in result.resources if r.type.endswith("RoleAssignment"))
    assert grants == ["operator-mlw-one-operator", "operator-mlw-two-operator"]
