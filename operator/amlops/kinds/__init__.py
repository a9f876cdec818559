"""The kinds: one module each, holding what the shared core, the drivers and the backends need to
know about it (metadata, CRD columns, embedded Azure ML parts, references and invariants).

``KINDS`` is the registry and the only list of kinds: the loader (kind names, workspaces, plain
CLI v2 files), the SDK checks, the reference checks, the CRDs and the apply order all read it. A
new kind is one new module and one entry below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amlops.kinds import (
    component,
    compute_cluster,
    endpoint,
    environment,
    git_source,
    model,
    pipeline,
    role_assignment,
    serverless_endpoint,
    workspace,
    workspace_binding,
)
from amlops.kinds.base import Kind

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        workspace.KIND,
        compute_cluster.KIND,
        role_assignment.KIND,
        model.KIND,
        component.KIND,
        pipeline.KIND,
        endpoint.KIND,
        serverless_endpoint.KIND,
        environment.KIND,
        git_source.KIND,
        workspace_binding.KIND,
    )
}

# The order the operator kinds are applied and reconciled in, each after what it depends on:
# an Endpoint serves a Model that a Pipeline may register.
ORDER: tuple[str, ...] = tuple(
    k.name for k in KINDS.values() if k.crd is not None and k.engine == "operator"
)
# Every kind with a custom resource: the operator kinds, then the sources they come from
# (GitSource), which the operator reconciles without a backend, and the tenancy bindings
# (WorkspaceBinding), which it only reads.
CRD_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.crd is not None)
# What the Pulumi program applies (infra/).
INFRA_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.engine == "pulumi")


def workspace_of(kind: str, name: str, spec: Mapping[str, Any]) -> str | None:
    """The workspace an object belongs to: the one answer for every driver."""
    known = KINDS.get(kind)
    if known is None:
        value = spec.get("workspace")
        return value if isinstance(value, str) else None
    return known.workspace_of(name, spec)
