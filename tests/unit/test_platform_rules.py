"""The rules that stand for what the Pulumi program cannot declare: where each one stops.

One mistake, one finding: these rules stay out of the way of ref.duplicate and of each other,
and leave alone what the program can declare (a shared resource group it does not create, the
same role on two scopes, a privileged role where another rule already names it).
"""

from __future__ import annotations

from pathlib import Path

from amlops.core.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = (ROOT / "manifests" / "platform" / "workspaces.yaml").read_text(encoding="utf-8")
TAGS = '  tags: {owner: ml-platform@contoso.com, cost-center: "4711"}\n'
GROUP = "6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11"


def errors(*docs: str) -> list[tuple[str, str, str]]:
    """(rule, object name, field) of each error, with the example workspaces declared."""
    text = PLATFORM + "".join(f"---\n{d}" for d in docs)
    report = validate_paths([], texts={"platform.yaml": text}, check_files=False, sdk=False)
    return [(f.rule, f.name or "", f.field) for f in report.errors]


def workspace(name: str, *extra: str, env: str = "dev", group: str = "rg-other") -> str:
    lines = "".join(f"  {line}\n" for line in extra)
    return (
        f"apiVersion: amlops.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {name}}}\n"
        f"spec:\n  environment: {env}\n  location: westeurope\n  resourceGroup: {group}\n"
        f"  storage: {{allowSharedKeyAccess: false}}\n{lines}{TAGS}"
    )


def grant(name: str, role: str, scope: str, principal: str = "") -> str:
    principal = principal or f"{{type: Group, objectId: {GROUP}}}"
    return (
        f"apiVersion: amlops.io/v1alpha1\nkind: RoleAssignment\nmetadata: {{name: {name}}}\n"
        f"spec:\n  principal: {principal}\n  role: {role}\n  scope: {scope}\n"
    )


def cluster(name: str, ws: str) -> str:
    return (
        f"apiVersion: amlops.io/v1alpha1\nkind: ComputeCluster\nmetadata: {{name: {name}}}\n"
        f"spec:\n  workspace: {ws}\n  vmSize: Standard_NC4as_T4_v3\n  minInstances: 0\n"
        f"  maxInstances: 2\n  idleTimeBeforeScaleDown: 1800\n{TAGS}"
    )


def test_the_example_workspaces_pass() -> None:
    assert errors() == []


def test_privileged_roles_are_one_finding_wherever_they_are_granted() -> None:
    dev = grant("broad", "Owner", "{workspace: mlw-platform-dev}")
    prod = grant("broad", "User Access Administrator", "{workspace: mlw-platform-prod}")
    assert errors(dev, prod) == [
        ("rbac.supported-role", "broad", "spec.role"),
        ("rbac.prod-no-owner", "broad", "spec.role"),
    ]


def test_role_names_match_case_blind_like_azure() -> None:
    assert errors(grant("ds", "azureml DATA scientist", "{workspace: mlw-platform-dev}")) == []
    assert errors(grant("c", "contributor", "{workspace: mlw-platform-prod}")) == [
        ("rbac.prod-no-owner", "c", "spec.role")
    ]


def test_the_same_role_on_two_scopes_is_two_grants() -> None:
    assert (
        errors(
            grant("on-ws", "Reader", "{workspace: mlw-platform-dev}"),
            grant("on-st", "Reader", "{workspace: mlw-platform-dev, resource: storage}"),
            grant("on-prod", "Reader", "{workspace: mlw-platform-prod}"),
        )
        == []
    )


def test_the_operator_identity_is_one_principal() -> None:
    operator = "{operatorIdentity: true}"
    ws = "{workspace: mlw-platform-dev}"
    assert errors(
        grant("op-1", "AcrPull", ws, operator),
        grant("op-2", "AcrPull", ws, operator),
        grant("op-3", "Reader", ws, operator),
    ) == [("rbac.duplicate-grant", "op-2", "spec")]


def test_a_name_declared_twice_is_only_ref_duplicate() -> None:
    ws = "{workspace: mlw-platform-dev}"
    again = workspace("mlw-platform-dev", group="rg-mlplatform-dev")
    assert errors(grant("g", "Reader", ws), grant("g", "Reader", ws), again) == [
        ("ref.duplicate", "g", "metadata.name"),
        ("ref.duplicate", "mlw-platform-dev", "metadata.name"),
    ]
    twice = cluster("gpu", "mlw-platform-dev")
    assert errors(twice, twice) == [("ref.duplicate", "gpu", "metadata.name")]


def test_a_resource_group_is_created_once_per_environment() -> None:
    assert (
        errors(workspace("mlw-two", "existingResourceGroup: true", group="rg-mlplatform-dev")) == []
    )
    # Another environment is another stack (and usually another subscription).
    assert errors(workspace("mlw-staging", env="staging", group="rg-mlplatform-dev")) == []
    assert errors(workspace("mlw-two", group="rg-mlplatform-dev")) == [
        ("workspace.resource-group-owner", "mlw-two", "spec.resourceGroup")
    ]


def test_only_a_private_workspace_needs_a_premium_registry() -> None:
    assert errors(workspace("mlw-two", "containerRegistry: {sku: Basic}")) == []
    assert errors(workspace("mlw-two", "publicNetworkAccess: Disabled")) == []
    assert errors(
        workspace("mlw-two", "publicNetworkAccess: Disabled", "containerRegistry: {sku: Basic}")
    ) == [("workspace.private-registry-premium", "mlw-two", "spec.containerRegistry.sku")]


def test_workspace_names_have_3_to_33_characters() -> None:
    assert errors(workspace("m" * 33)) == []
    assert errors(workspace("m" * 34), workspace("ml", group="rg-ml")) == [
        ("workspace.name-length", "m" * 34, "metadata.name"),
        ("workspace.name-length", "ml", "metadata.name"),
    ]


def test_cluster_names_that_clash_in_pulumi_are_reported_on_the_later_one() -> None:
    assert errors(
        workspace("mlw-platform", group="rg-mlplatform"),
        cluster("dev-gpu", "mlw-platform"),
        cluster("gpu", "mlw-platform-dev"),
    ) == [("compute.unique-resource-name", "gpu", "metadata.name")]
