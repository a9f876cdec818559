"""Manifests the program cannot express fail with file:line before anything is declared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amlops.core.manifests import load_tree
from infra.model import ManifestError, Platform, seconds_to_iso8601, translate

WORKSPACE = """
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: mlw-a
spec:
  environment: dev
  location: westeurope
  resourceGroup: rg-a
  tags: {owner: team@contoso.com, cost-center: "4711"}
"""


def platform(directory: Path, environment: str = "dev") -> Platform:
    return translate(
        load_tree([directory]).manifests,
        environment=environment,
        commit="c0ffee",
        stack_tags={"owner": "stack-default", "platform": "ml"},
        root=directory.parent,
    )


def problems(directory: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        platform(directory)
    assert "nothing was declared" in str(info.value)
    return [f"{Path(f.file).name}:{f.line} {f.rule} {f.field}" for f in info.value.findings]


@pytest.mark.parametrize(
    ("seconds", "iso"),
    [
        (0, "PT0S"),
        (45, "PT45S"),
        (120, "PT2M"),
        (900, "PT15M"),
        (1800, "PT30M"),
        (3600, "PT1H"),
        (3690, "PT1H1M30S"),
        (86400, "PT24H"),
    ],
)
def test_idle_time_is_iso8601(seconds: int, iso: str) -> None:
    assert seconds_to_iso8601(seconds) == iso


def test_unknown_vm_family_names_file_line_and_field(
    write_manifests: Callable[[str], Path],
) -> None:
    directory = write_manifests(
        WORKSPACE
        + """---
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: gpu
spec:
  workspace: mlw-a
  vmSize: Standard_NC24ads_A100_v5
  maxInstances: 2
"""
    )
    assert problems(directory) == ["platform.yaml:17 infra.vm-family spec.vmSize"]


def test_min_above_max(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(
        WORKSPACE
        + """---
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: gpu
spec:
  workspace: mlw-a
  vmSize: Standard_NC4as_T4_v3
  minInstances: 3
  maxInstances: 2
"""
    )
    assert problems(directory) == ["platform.yaml:18 infra.min-max spec.minInstances"]


def test_unknown_role_missing_workspace_and_missing_compute_are_all_reported(
    write_manifests: Callable[[str], Path],
) -> None:
    grant = """---
apiVersion: amlops.io/v1alpha1
kind: RoleAssignment
metadata:
  name: {name}
spec:
  principal: {{type: Group, objectId: 6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11}}
  role: {role}
  scope: {scope}
"""
    directory = write_manifests(
        WORKSPACE
        + grant.format(name="bad-role", role="Owner", scope="{workspace: mlw-a}")
        + grant.format(name="no-ws", role="Reader", scope="{workspace: mlw-b}")
        + grant.format(name="no-gpu", role="Reader", scope="{workspace: mlw-a, compute: gpu}")
    )
    assert problems(directory) == [
        "platform.yaml:17 infra.role spec.role",
        "platform.yaml:27 infra.scope spec.scope.workspace",
        "platform.yaml:36 infra.scope spec.scope.compute",
    ]


def test_same_grant_twice_is_an_error(write_manifests: Callable[[str], Path]) -> None:
    grant = """---
apiVersion: amlops.io/v1alpha1
kind: RoleAssignment
metadata:
  name: {name}
spec:
  principal: {{type: Group, objectId: {oid}}}
  role: Reader
  scope: {{workspace: mlw-a}}
"""
    oid = "6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11"
    # Object IDs compare case-insensitively in Azure: upper case is the same principal.
    directory = write_manifests(
        WORKSPACE + grant.format(name="one", oid=oid) + grant.format(name="two", oid=oid.upper())
    )
    with pytest.raises(ManifestError) as info:
        platform(directory)
    (finding,) = info.value.findings
    assert finding.rule == "infra.duplicate-assignment"
    assert finding.name == "two"
    assert "RoleAssignment 'one'" in finding.message


def test_private_workspace_needs_a_premium_registry(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(
        WORKSPACE + "  publicNetworkAccess: Disabled\n  containerRegistry: {sku: Standard}\n"
    )
    assert problems(directory) == ["platform.yaml:11 infra.registry-sku spec.containerRegistry.sku"]


def test_workspace_name_longer_than_azure_allows(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(WORKSPACE.replace("name: mlw-a", "name: mlw-" + "a" * 30))
    assert problems(directory) == ["platform.yaml:4 infra.workspace-name metadata.name"]


def test_two_workspaces_cannot_both_create_one_resource_group(
    write_manifests: Callable[[str], Path],
) -> None:
    directory = write_manifests(
        WORKSPACE + "---\n" + WORKSPACE.replace("name: mlw-a", "name: mlw-b")
    )
    assert problems(directory) == ["platform.yaml:19 infra.resource-group spec.resourceGroup"]
    shared = write_manifests(
        WORKSPACE
        + "---\n"
        + WORKSPACE.replace("name: mlw-a", "name: mlw-b")
        + "  existingResourceGroup: true\n"
    )
    assert [w.create_resource_group for w in platform(shared).workspaces] == [True, False]


def test_problems_in_another_environment_also_stop_the_stack(
    write_manifests: Callable[[str], Path],
) -> None:
    directory = write_manifests(
        WORKSPACE
        + "---\n"
        + WORKSPACE.replace("name: mlw-a", "name: mlw-p").replace(
            "environment: dev", "environment: prod"
        )
        + """---
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: gpu
spec:
  workspace: mlw-p
  vmSize: Standard_XYZ
  maxInstances: 2
"""
    )
    assert problems(directory) == ["platform.yaml:28 infra.vm-family spec.vmSize"]


def test_tags_layer_stack_then_manifest_then_system(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(WORKSPACE)
    (ws,) = platform(directory).workspaces
    assert ws.tags == {
        "platform": "ml",  # stack default
        "owner": "team@contoso.com",  # the manifest beats the stack default
        "cost-center": "4711",
        "environment": "dev",
        "managed-by": "amlops",
        "amlops-workspace": "mlw-a",
        "amlops-manifest": "manifests/platform.yaml",
        "amlops-commit": "c0ffee",
    }


def test_operator_grants_are_kept_apart(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(
        WORKSPACE
        + """---
apiVersion: amlops.io/v1alpha1
kind: RoleAssignment
metadata:
  name: operator
spec:
  principal: {operatorIdentity: true}
  role: azureml data scientist
  scope: {workspace: mlw-a}
"""
    )
    result = platform(directory)
    assert result.assignments == ()
    (grant,) = result.operator_assignments
    assert grant.principal is None
    assert grant.role_guid == "f6c7c914-8db3-469d-8ca1-694a8f32e121"  # names match case-blind
    assert "(workspace=mlw-a, environment=dev)" in grant.description


def test_cluster_names_that_clash_in_pulumi(write_manifests: Callable[[str], Path]) -> None:
    cluster = """---
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: {name}
spec:
  workspace: {ws}
  vmSize: Standard_NC4as_T4_v3
  maxInstances: 2
"""
    directory = write_manifests(
        WORKSPACE.replace("name: mlw-a", "name: mlw-a-b")
        + cluster.format(name="c", ws="mlw-a-b")
        + "---\n"
        + WORKSPACE.replace("rg-a", "rg-other")
        + cluster.format(name="b-c", ws="mlw-a")
    )
    assert problems(directory) == ["platform.yaml:34 infra.name-clash metadata.name"]
