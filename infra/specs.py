"""Manifests -> the typed, frozen specs the components take.

This is the only place that reads manifest bodies, and it only translates: it takes manifests
`amlops validate` accepts. Everything the program cannot express (an unknown VM size, a role
with no built-in ID, a scope naming a missing workspace, a grant made twice, two clusters with
one Pulumi name...) is a finding of the core's checks, which ``program.load_platform`` turns
into a ``ManifestError`` before a single resource is declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from amlops.core.azure import role_id
from amlops.core.findings import Finding, sort_findings
from amlops.core.manifests import Manifest
from amlops.core.provenance import origin_in
from infra import naming

ISOLATED_MODES = ("AllowInternetOutbound", "AllowOnlyApprovedOutbound")


def format_finding(f: Finding) -> str:
    """One line per finding, the fields `amlops validate` shows, in the order an editor jumps to."""
    obj = f" {f.kind}/{f.name}" if f.kind else ""
    where = f" {f.field}" if f.field else ""
    return f"{f.location()}: {f.severity} [{f.rule}]{obj}{where}: {f.message}"


class ManifestError(pulumi.RunError):
    """Findings that stop the program before it declares anything.

    A ``RunError`` so that ``pulumi up`` prints the message without a Python traceback.
    """

    def __init__(self, findings: Sequence[Finding], headline: str) -> None:
        self.findings = sort_findings(list(findings))
        lines = [headline, *(f"  {format_finding(f)}" for f in self.findings)]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    environment: str
    location: str
    resource_group: str
    create_resource_group: bool
    display_name: str | None
    description: str | None
    sku: str
    public_network_access: str
    isolation_mode: str | None
    storage_sku: str
    allow_shared_key_access: bool
    purge_protection: bool
    soft_delete_retention_days: int
    registry_sku: str
    log_retention_days: int
    protect: bool  # prod: `pulumi destroy` and accidental removals must not delete data
    tags: Mapping[str, str]

    @property
    def network_isolated(self) -> bool:
        return self.isolation_mode in ISOLATED_MODES


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    workspace: str
    vm_size: str
    priority: str  # Dedicated | LowPriority
    min_nodes: int
    max_nodes: int
    idle_before_scale_down: str | None  # ISO-8601; None keeps Azure's default
    description: str | None
    node_public_ip: bool
    tags: Mapping[str, str]

    @property
    def key(self) -> str:
        return f"{self.workspace}/{self.name}"


@dataclass(frozen=True)
class Principal:
    object_id: str
    type: str  # User | Group | ServicePrincipal
    display_name: str | None = None


@dataclass(frozen=True)
class Scope:
    """What a role is granted on: a workspace, one of its clusters, or one of its resources."""

    workspace: str
    compute: str | None = None
    resource: str | None = None  # storage | keyVault | containerRegistry

    @property
    def key(self) -> str:
        if self.compute:
            return f"{self.workspace}/computes/{self.compute}"
        if self.resource:
            return f"{self.workspace}/{self.resource}"
        return self.workspace


@dataclass(frozen=True)
class AssignmentSpec:
    name: str
    role: str
    role_guid: str
    scope: Scope
    principal: Principal | None  # None: the operator's managed identity
    environment: str
    description: str


@dataclass(frozen=True)
class Platform:
    """What one stack declares: the workspaces of its environment and what hangs off them."""

    environment: str
    workspaces: tuple[WorkspaceSpec, ...] = ()
    clusters: tuple[ClusterSpec, ...] = ()
    assignments: tuple[AssignmentSpec, ...] = ()
    operator_assignments: tuple[AssignmentSpec, ...] = ()


def seconds_to_iso8601(seconds: int) -> str:
    """1800 -> PT30M, 3690 -> PT1H1M30S, 0 -> PT0S (the form Azure ML's scale settings take)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}H" if hours else "",
        f"{minutes}M" if minutes else "",
        f"{secs}S" if secs else "",
    ]
    return "PT" + ("".join(parts) or "0S")


def _str(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    return None if value is None else str(value)


def _section(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    return value if isinstance(value, dict) else {}


def _user_tags(spec: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _section(spec, "tags").items()}


class _Translator:
    def __init__(self, commit: str, stack_tags: Mapping[str, str], root: Path | None) -> None:
        self.commit = commit
        self.root = root
        self.stack_tags = dict(stack_tags)
        self.workspaces: dict[str, WorkspaceSpec] = {}

    def source_path(self, m: Manifest) -> str:
        """The manifest's path relative to the project, whatever directory the run started in."""
        return origin_in(m.file, self.root, self.commit).manifest

    def system_tags(self, m: Manifest, workspace: str, environment: str) -> dict[str, str]:
        return {
            naming.TAG_ENVIRONMENT: environment,
            naming.TAG_MANAGED_BY: "amlops",
            naming.TAG_WORKSPACE: workspace,
            naming.TAG_MANIFEST: self.source_path(m),
            naming.TAG_COMMIT: self.commit,
        }

    def workspace(self, m: Manifest) -> WorkspaceSpec:
        spec = m.spec
        env = str(spec.get("environment", ""))
        prod = env == "prod"
        public = str(spec.get("publicNetworkAccess", "Enabled"))
        storage = _section(spec, "storage")
        vault = _section(spec, "keyVault")
        registry = _section(spec, "containerRegistry")
        ws = WorkspaceSpec(
            name=m.name,
            environment=env,
            location=str(spec.get("location", "")),
            resource_group=str(spec.get("resourceGroup", "")),
            create_resource_group=not bool(spec.get("existingResourceGroup", False)),
            display_name=_str(spec, "displayName"),
            description=_str(spec, "description"),
            sku=str(spec.get("sku", "Basic")),
            public_network_access=public,
            isolation_mode=_str(_section(spec, "managedNetwork"), "isolationMode"),
            storage_sku=str(storage.get("sku", "Standard_ZRS" if prod else "Standard_LRS")),
            # Shared keys off unless asked for: the workspace then reaches its datastores with
            # its managed identity, which is what `system_datastores_auth_mode` is set to.
            allow_shared_key_access=bool(storage.get("allowSharedKeyAccess", False)),
            purge_protection=bool(vault.get("purgeProtection", prod)),
            # Dev vaults keep deleted secrets a week so a recreated workspace can reuse the name.
            soft_delete_retention_days=int(vault.get("softDeleteRetentionDays", 90 if prod else 7)),
            # A private workspace reaches its registry through a private endpoint: Premium only
            # (workspace.private-registry-premium rejects anything else).
            registry_sku=str(
                registry.get("sku", "Premium" if prod or public == "Disabled" else "Basic")
            ),
            log_retention_days=90 if prod else 30,
            protect=prod,
            tags=naming.merge_tags(
                self.stack_tags, _user_tags(spec), self.system_tags(m, m.name, env)
            ),
        )
        self.workspaces[ws.name] = ws
        return ws

    def cluster(self, m: Manifest) -> ClusterSpec:
        spec = m.spec
        ws = self.workspaces[str(spec["workspace"])]
        idle = spec.get("idleTimeBeforeScaleDown")
        return ClusterSpec(
            name=m.name,
            workspace=ws.name,
            vm_size=str(spec["vmSize"]),
            priority=str(spec.get("tier", "Dedicated")),
            min_nodes=int(spec.get("minInstances", 0)),
            max_nodes=int(spec["maxInstances"]),
            idle_before_scale_down=None if idle is None else seconds_to_iso8601(int(idle)),
            description=_str(spec, "description"),
            node_public_ip=not ws.network_isolated,
            tags=naming.merge_tags(
                self.stack_tags, _user_tags(spec), self.system_tags(m, ws.name, ws.environment)
            ),
        )

    def assignment(self, m: Manifest) -> AssignmentSpec:
        spec = m.spec
        role = str(spec["role"])
        guid = role_id(role)
        if guid is None:
            # rbac.supported-role reports this first; only a policy set without that rule gets
            # here, and a guessed role would grant something nobody asked for.
            raise ValueError(f"{m.file}: RoleAssignment {m.name!r}: {role!r} has no built-in ID")
        raw_scope = _section(spec, "scope")
        ws = self.workspaces[str(raw_scope["workspace"])]
        raw_principal = _section(spec, "principal")
        principal = None
        if not raw_principal.get("operatorIdentity", False):
            principal = Principal(
                object_id=str(raw_principal.get("objectId", "")).lower(),
                type=str(raw_principal.get("type", "")),
                display_name=_str(raw_principal, "displayName"),
            )
        scope = Scope(ws.name, _str(raw_scope, "compute"), _str(raw_scope, "resource"))
        return AssignmentSpec(
            name=m.name,
            role=role,
            role_guid=guid,
            scope=scope,
            principal=principal,
            environment=ws.environment,
            # Role assignments carry no tags: these markers let the deploy-time policy pack
            # apply the environment's rules to them and tell a grant on a cluster or resource
            # from one on the workspace, even in a preview where the scope's ID is unknown
            # (infra/policypack.py reads them back).
            description=(
                f"amlops RoleAssignment/{m.name} ({scope_markers(scope, ws.environment)}) "
                f"from {self.source_path(m)}"
            ),
        )


def scope_markers(scope: Scope, environment: str) -> str:
    """``workspace=W, environment=E`` and, below the workspace, ``compute=C`` or ``resource=R``."""
    markers = [f"workspace={scope.workspace}", f"environment={environment}"]
    if scope.compute:
        markers.append(f"compute={scope.compute}")
    if scope.resource:
        markers.append(f"resource={scope.resource}")
    return ", ".join(markers)


def translate(
    manifests: Sequence[Manifest],
    *,
    environment: str,
    commit: str,
    stack_tags: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> Platform:
    """The specs of ``environment`` from manifests that `amlops validate` accepts.

    ``program.load_platform`` runs that check first, over every environment: a problem in
    another environment's manifests also stops this stack, since the repository is one desired
    state. ``root`` is the project directory the ``amlops-manifest`` tag paths are relative to.
    """
    t = _Translator(commit, stack_tags or {}, root)
    by_kind = {
        kind: [m for m in manifests if m.kind == kind]
        for kind in ("Workspace", "ComputeCluster", "RoleAssignment")
    }
    workspaces = [t.workspace(m) for m in by_kind["Workspace"]]
    mine = {w.name for w in workspaces if w.environment == environment}
    clusters = [t.cluster(m) for m in by_kind["ComputeCluster"] if m.workspace in mine]
    assignments = [t.assignment(m) for m in by_kind["RoleAssignment"] if m.workspace in mine]
    return Platform(
        environment=environment,
        workspaces=tuple(sorted((w for w in workspaces if w.name in mine), key=lambda w: w.name)),
        clusters=tuple(sorted(clusters, key=lambda c: c.key)),
        assignments=tuple(a for a in assignments if a.principal is not None),
        operator_assignments=tuple(a for a in assignments if a.principal is None),
    )
