"""Manifests -> component specs: what the translation derives. It checks nothing itself: what
the program cannot express is a finding of `amlops validate` (tests/infra/test_validate_parity.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amlops.core.manifests import load_tree
from infra.specs import Platform, seconds_to_iso8601, translate

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


def test_grants_below_the_workspace_name_their_scope_in_the_description(
    write_manifests: Callable[[str], Path],
) -> None:
    grant = """---
apiVersion: amlops.io/v1alpha1
kind: RoleAssignment
metadata:
  name: {name}
spec:
  principal: {{type: Group, objectId: 6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11}}
  role: Reader
  scope: {scope}
"""
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
  maxInstances: 2
"""
        + grant.format(name="on-gpu", scope="{workspace: mlw-a, compute: gpu}")
        + grant.format(name="on-storage", scope="{workspace: mlw-a, resource: storage}")
    )
    # The deploy-time policy pack reads these back: a scope's resource ID is unknown in a
    # first preview, and without them the two grants would look like one made twice.
    on_gpu, on_storage = platform(directory).assignments
    assert "(workspace=mlw-a, environment=dev, compute=gpu)" in on_gpu.description
    assert "(workspace=mlw-a, environment=dev, resource=storage)" in on_storage.description
    assert on_gpu.scope.key == "mlw-a/computes/gpu"
    assert on_storage.scope.key == "mlw-a/storage"


def test_a_stack_gets_only_its_environment(write_manifests: Callable[[str], Path]) -> None:
    directory = write_manifests(
        WORKSPACE
        + "---\n"
        + WORKSPACE.replace("name: mlw-a", "name: mlw-p")
        .replace("environment: dev", "environment: prod")
        .replace("rg-a", "rg-p")
        + """---
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: gpu
spec:
  workspace: mlw-p
  vmSize: Standard_NC4as_T4_v3
  minInstances: 1
  maxInstances: 2
"""
    )
    dev, prod = platform(directory, "dev"), platform(directory, "prod")
    assert [w.name for w in dev.workspaces] == ["mlw-a"] and dev.clusters == ()
    (ws,) = prod.workspaces
    assert (ws.name, ws.protect, ws.registry_sku, ws.purge_protection) == (
        "mlw-p",
        True,
        "Premium",
        True,
    )
    (cluster,) = prod.clusters
    assert (cluster.key, cluster.min_nodes, cluster.max_nodes) == ("mlw-p/gpu", 1, 2)
    assert cluster.node_public_ip  # no managed network on mlw-p


def test_workspaces_sharing_a_resource_group_create_it_once(
    write_manifests: Callable[[str], Path],
) -> None:
    shared = write_manifests(
        WORKSPACE
        + "---\n"
        + WORKSPACE.replace("name: mlw-a", "name: mlw-b")
        + "  existingResourceGroup: true\n"
    )
    assert [w.create_resource_group for w in platform(shared).workspaces] == [True, False]
