"""Manifests -> the typed, frozen specs the components take.

This is the only place that reads manifest bodies. Everything the program cannot express is
reported here, with the manifest's file, line and field, before a single resource is declared:
an unknown VM size family, ``minInstances`` above ``maxInstances``, a role with no built-in ID,
a scope naming a workspace or cluster that no manifest declares, a grant made twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from amlops.core.findings import Finding, Severity, sort_findings
from amlops.core.manifests import Manifest
from infra import naming
from infra.roles import BUILTIN_ROLES, role_id
from infra.vmsizes import VM_FAMILIES, family_of

# Azure ML workspace names: ^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$ (the REST API's pattern); the
# manifest schema allows 63 characters because other kinds share its metadata rules.
WORKSPACE_NAME_MAX = 33
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
    vm_family: str
    accelerator: str | None
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
        self.errors: list[Finding] = []
        self.workspaces: dict[str, WorkspaceSpec] = {}
        self.workspace_manifests: dict[str, Manifest] = {}
        self.clusters: dict[str, ClusterSpec] = {}

    def error(self, m: Manifest, path: tuple[str | int, ...], rule: str, message: str) -> None:
        self.errors.append(m.finding(path, rule, message, Severity.ERROR))

    def source_path(self, m: Manifest) -> str:
        """The manifest's path relative to the project, whatever directory the run started in."""
        if self.root is None:
            return m.file
        try:
            return Path(m.file).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return m.file

    def system_tags(self, m: Manifest, workspace: str, environment: str) -> dict[str, str]:
        return {
            naming.TAG_ENVIRONMENT: environment,
            naming.TAG_MANAGED_BY: "amlops",
            naming.TAG_WORKSPACE: workspace,
            naming.TAG_MANIFEST: self.source_path(m),
            naming.TAG_COMMIT: self.commit,
        }

    # -- Workspace ---------------------------------------------------------------------------

    def workspace(self, m: Manifest) -> None:
        spec = m.spec
        env = str(spec.get("environment", ""))
        prod = env == "prod"
        if len(m.name) > WORKSPACE_NAME_MAX:
            self.error(
                m,
                ("metadata", "name"),
                "infra.workspace-name",
                f"Azure ML workspace names have at most {WORKSPACE_NAME_MAX} characters; "
                f"{m.name!r} has {len(m.name)}. Choose a shorter name",
            )
        public = str(spec.get("publicNetworkAccess", "Enabled"))
        storage = _section(spec, "storage")
        vault = _section(spec, "keyVault")
        registry = _section(spec, "containerRegistry")
        registry_sku = str(
            registry.get("sku", "Premium" if prod or public == "Disabled" else "Basic")
        )
        if public == "Disabled" and registry_sku != "Premium":
            self.error(
                m,
                ("spec", "containerRegistry", "sku"),
                "infra.registry-sku",
                f"a workspace without public network access reaches its registry through a "
                f"private endpoint, which needs the Premium SKU, not {registry_sku}. Set "
                "spec.containerRegistry.sku to Premium",
            )
        location = str(spec.get("location", ""))
        self.workspace_manifests[m.name] = m
        self.workspaces[m.name] = WorkspaceSpec(
            name=m.name,
            environment=env,
            location=location,
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
            registry_sku=registry_sku,
            log_retention_days=90 if prod else 30,
            protect=prod,
            tags=naming.merge_tags(
                self.stack_tags, _user_tags(spec), self.system_tags(m, m.name, env)
            ),
        )

    def check_resource_groups(self) -> None:
        creators: dict[tuple[str, str], str] = {}
        for ws in sorted(self.workspaces.values(), key=lambda w: w.name):
            if not ws.create_resource_group:
                continue
            key = (ws.environment, ws.resource_group.lower())
            first = creators.setdefault(key, ws.name)
            if first != ws.name:
                self.error(
                    self.workspace_manifests[ws.name],
                    ("spec", "resourceGroup"),
                    "infra.resource-group",
                    f"resource group {ws.resource_group!r} is already created by Workspace "
                    f"{first!r} in the same environment; set `existingResourceGroup: true` here",
                )

    # -- ComputeCluster ----------------------------------------------------------------------

    def cluster(self, m: Manifest) -> None:
        spec = m.spec
        ws_name = str(spec.get("workspace", ""))
        ws = self.workspaces.get(ws_name)
        if ws is None:
            self.error(
                m,
                ("spec", "workspace"),
                "infra.workspace-ref",
                f"no Workspace manifest is named {ws_name!r}; "
                f"declared: {', '.join(sorted(self.workspaces)) or 'none'}",
            )
        vm_size = str(spec.get("vmSize", ""))
        family = family_of(vm_size)
        if family is None:
            self.error(
                m,
                ("spec", "vmSize"),
                "infra.vm-family",
                f"{vm_size!r} is in no VM family the program can provision; known families: "
                f"{', '.join(f.name for f in VM_FAMILIES)}. Check the size's spelling",
            )
        low = int(spec.get("minInstances", 0))
        high = int(spec.get("maxInstances", 0))
        if low > high:
            self.error(
                m,
                ("spec", "minInstances"),
                "infra.min-max",
                f"minInstances {low} is above maxInstances {high}; Azure rejects such a scale "
                "setting. Lower spec.minInstances or raise spec.maxInstances",
            )
        if ws is None or family is None:
            return
        # Pulumi names the cluster component `<workspace>-<cluster>`; `a-b`/`c` and `a`/`b-c`
        # would both be `a-b-c`, which the engine rejects as a duplicate URN mid-update.
        logical = f"{ws.name}-{m.name}"
        clash = next(
            (c for c in self.clusters.values() if f"{c.workspace}-{c.name}" == logical), None
        )
        if clash is not None:
            self.error(
                m,
                ("metadata", "name"),
                "infra.name-clash",
                f"cluster {ws.name}/{m.name} and {clash.workspace}/{clash.name} get the same "
                f"Pulumi name {logical!r}; rename one of them",
            )
            return
        idle = spec.get("idleTimeBeforeScaleDown")
        tier = str(spec.get("tier", "Dedicated"))
        cluster = ClusterSpec(
            name=m.name,
            workspace=ws.name,
            vm_size=vm_size,
            vm_family=family.name,
            accelerator=family.accelerator,
            priority=tier,
            min_nodes=low,
            max_nodes=high,
            idle_before_scale_down=None if idle is None else seconds_to_iso8601(int(idle)),
            description=_str(spec, "description"),
            node_public_ip=not ws.network_isolated,
            tags=naming.merge_tags(
                self.stack_tags, _user_tags(spec), self.system_tags(m, ws.name, ws.environment)
            ),
        )
        self.clusters[cluster.key] = cluster

    # -- RoleAssignment ----------------------------------------------------------------------

    def assignment(self, m: Manifest) -> AssignmentSpec | None:
        spec = m.spec
        role = str(spec.get("role", ""))
        guid = role_id(role)
        if guid is None:
            self.error(
                m,
                ("spec", "role"),
                "infra.role",
                f"{role!r} is not a built-in role the program knows; use one of: "
                f"{', '.join(BUILTIN_ROLES)} (or add it to infra/roles.py)",
            )
        raw_scope = _section(spec, "scope")
        ws_name = str(raw_scope.get("workspace", ""))
        compute = _str(raw_scope, "compute")
        ws = self.workspaces.get(ws_name)
        if ws is None:
            self.error(
                m,
                ("spec", "scope", "workspace"),
                "infra.scope",
                f"scope names workspace {ws_name!r}, which no Workspace manifest declares; "
                f"declared: {', '.join(sorted(self.workspaces)) or 'none'}",
            )
        elif compute is not None and f"{ws_name}/{compute}" not in self.clusters:
            known = sorted(c.name for c in self.clusters.values() if c.workspace == ws_name)
            self.error(
                m,
                ("spec", "scope", "compute"),
                "infra.scope",
                f"scope names compute {compute!r}, which is not a ComputeCluster of workspace "
                f"{ws_name!r}; its clusters: {', '.join(known) or 'none'}",
            )
        if guid is None or ws is None or (compute and f"{ws_name}/{compute}" not in self.clusters):
            return None
        raw_principal = _section(spec, "principal")
        principal = None
        if not raw_principal.get("operatorIdentity", False):
            principal = Principal(
                object_id=str(raw_principal.get("objectId", "")).lower(),
                type=str(raw_principal.get("type", "")),
                display_name=_str(raw_principal, "displayName"),
            )
        return AssignmentSpec(
            name=m.name,
            role=role,
            role_guid=guid,
            scope=Scope(ws_name, compute, _str(raw_scope, "resource")),
            principal=principal,
            environment=ws.environment,
            # Role assignments carry no tags: these markers let the deploy-time policy pack
            # apply the environment's rules to them (infra/policypack.py reads them back).
            description=(
                f"amlops RoleAssignment/{m.name} (workspace={ws.name}, "
                f"environment={ws.environment}) from {self.source_path(m)}"
            ),
        )

    def check_duplicates(self, pairs: Iterable[tuple[Manifest, AssignmentSpec]]) -> None:
        seen: dict[tuple[str, str, str], Manifest] = {}
        for m, a in pairs:
            who = a.principal.object_id if a.principal else "operator-identity"
            key = (a.scope.key, who, a.role_guid)
            first = seen.setdefault(key, m)
            if first is not m:
                pos = first.locate(())
                self.error(
                    m,
                    ("spec",),
                    "infra.duplicate-assignment",
                    f"grants {a.role!r} to the same principal on the same scope as "
                    f"RoleAssignment {first.name!r} ({pos.file}:{pos.line}); Azure keeps one "
                    "assignment per grant. Remove one of them",
                )


def translate(
    manifests: Sequence[Manifest],
    *,
    environment: str,
    commit: str,
    stack_tags: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> Platform:
    """Check every infra manifest (all environments), then return the ones of ``environment``.

    Problems in another environment's manifests also stop this stack: the repository is one
    desired state, and a plan that passes here must not fail in the next stack. ``root`` is
    the project directory the ``amlops-manifest`` tag paths are relative to.
    """
    t = _Translator(commit, stack_tags or {}, root)
    by_kind = {
        kind: [m for m in manifests if m.kind == kind]
        for kind in ("Workspace", "ComputeCluster", "RoleAssignment")
    }
    for m in by_kind["Workspace"]:
        t.workspace(m)
    t.check_resource_groups()
    for m in by_kind["ComputeCluster"]:
        t.cluster(m)
    pairs: list[tuple[Manifest, AssignmentSpec]] = []
    for m in by_kind["RoleAssignment"]:
        spec = t.assignment(m)
        if spec is not None:
            pairs.append((m, spec))
    t.check_duplicates(pairs)
    if t.errors:
        raise ManifestError(
            t.errors,
            f"{len(t.errors)} manifest problem(s) the Pulumi program cannot express; "
            "nothing was declared:",
        )
    workspaces = tuple(
        sorted(
            (w for w in t.workspaces.values() if w.environment == environment), key=lambda w: w.name
        )
    )
    names = {w.name for w in workspaces}
    assignments = [a for _, a in pairs if a.scope.workspace in names]
    return Platform(
        environment=environment,
        workspaces=workspaces,
        clusters=tuple(
            sorted((c for c in t.clusters.values() if c.workspace in names), key=lambda c: c.key)
        ),
        assignments=tuple(a for a in assignments if a.principal is not None),
        operator_assignments=tuple(a for a in assignments if a.principal is None),
    )
