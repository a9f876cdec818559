"""A dev Workspace and a GPU ComputeCluster as manifest text, for tests that build a small
platform of their own (in tmp_path or as Git-revision texts)."""

from __future__ import annotations

import textwrap

WORKSPACE = """\
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: mlw-dev
spec:
  environment: {environment}
  location: westeurope
  resourceGroup: rg-dev
  tags:
    owner: ml-platform@contoso.com
    cost-center: "4711"
"""

CLUSTER = """\
apiVersion: amlops.io/v1alpha1
kind: ComputeCluster
metadata:
  name: gpu
spec:
  workspace: mlw-dev
  vmSize: Standard_NC4as_T4_v3
  tier: Dedicated
  minInstances: 0
  maxInstances: {max_instances}
  idleTimeBeforeScaleDown: 900
  tags:
    owner: ml-platform@contoso.com
    cost-center: "4711"
"""


def manifest(kind: str, name: str, spec: str) -> str:
    """Any kind's manifest text: ``spec`` is its YAML under ``spec:`` (indented as you like)."""
    head = f"apiVersion: amlops.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    return head + textwrap.indent(textwrap.dedent(spec), "  ")


def workspace(environment: str = "dev") -> str:
    return WORKSPACE.format(environment=environment)


def cluster(max_instances: object = 2) -> str:
    return CLUSTER.format(max_instances=max_instances)
