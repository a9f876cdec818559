"""Deploy-time policy: the amlops rules, enforced on the resources a Pulumi program declares.

For teams that run ``pulumi up --policy-pack policies/pulumi-policy-pack``. Two kinds of check:

* The manifest rules themselves (policies/rules/*.yaml, the ones ``amlops validate`` runs):
  the declared Azure resources are read back into Workspace, ComputeCluster and RoleAssignment
  bodies and the same PolicySet evaluates them, so the rules and their messages are shared,
  never copied. Errors block (mandatory); warnings are advisory.
* Program invariants no manifest can switch off (TLS 1.2, no public blobs, RBAC key vaults, no
  registry admin user, no SSH, provenance tags, nothing public next to a private workspace):
  they catch a program that was edited to drop one, or a resource declared outside the
  components. Built-in roles only is a manifest rule (rbac.supported-role), checked above.

Validators take pulumi-policy's argument objects and a ``report`` callback, nothing else, so
the tests call them directly on resource arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from amlops import API_VERSION
from amlops.core.findings import Finding
from amlops.core.locator import ObjectLocator, located_document
from amlops.core.manifests import Manifest, Segment
from amlops.core.policy import Context, PolicySet, load_policies
from infra import naming
from infra.roles import role_name_of

STORAGE = "azure-native:storage:StorageAccount"
VAULT = "azure-native:keyvault:Vault"
REGISTRY = "azure-native:containerregistry:Registry"
WORKSPACE = "azure-native:machinelearningservices:Workspace"
APP_INSIGHTS = "azure-native:applicationinsights:Component"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
COMPUTE = "azure-native:machinelearningservices:Compute"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
# Resources whose tags carry the amlops provenance (the identity has no single manifest).
PROVENANCE_TAGS = (naming.TAG_ENVIRONMENT, naming.TAG_MANAGED_BY, naming.TAG_COMMIT)

_MARKER = re.compile(r"\b(workspace|environment|compute|resource)=([A-Za-z0-9_.-]+)")
_ISO = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")
_WORKSPACE_IN_ID = re.compile(r"/workspaces/([^/]+)(?:/computes/([^/]+))?", re.IGNORECASE)


def iso8601_to_seconds(value: str) -> int | None:
    match = _ISO.match(value)
    if not match:
        return None
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _get(props: Mapping[str, Any], *path: str) -> Any:
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _known(props: Mapping[str, Any], key: str) -> Any:
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def _user_tags(props: Mapping[str, Any]) -> dict[str, str]:
    tags = props.get("tags") or {}
    return {str(k): str(v) for k, v in tags.items() if k not in naming.SYSTEM_TAGS}


def _environment(props: Mapping[str, Any]) -> str:
    # Unknown means prod: the strictest rules apply to a resource that does not say.
    return str(_get(props, "tags", naming.TAG_ENVIRONMENT) or "prod")


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    """Leave out what the resource does not set, as a manifest would (schemas see absences)."""
    cleaned = {k: _drop_none(v) if isinstance(v, dict) else v for k, v in body.items()}
    return {k: v for k, v in cleaned.items() if v is not None and v != {}}


# -- declared resources -> manifest bodies ----------------------------------------------------


def compute_body(props: Mapping[str, Any]) -> dict[str, Any]:
    aml = _get(props, "properties", "properties") or {}
    scale = aml.get("scaleSettings") or {}
    idle = scale.get("nodeIdleTimeBeforeScaleDown")
    return _drop_none(
        {
            "apiVersion": API_VERSION,
            "kind": "ComputeCluster",
            "metadata": {"name": props.get("computeName")},
            "spec": {
                # The tag, not `workspaceName`: that is the workspace's output, unknown in the
                # first preview, while tags are plain strings.
                "workspace": _get(props, "tags", naming.TAG_WORKSPACE)
                or props.get("workspaceName"),
                "vmSize": aml.get("vmSize"),
                "tier": aml.get("vmPriority"),
                "minInstances": scale.get("minNodeCount"),
                "maxInstances": scale.get("maxNodeCount"),
                "idleTimeBeforeScaleDown": iso8601_to_seconds(idle) if idle else None,
                "tags": _user_tags(props),
            },
        }
    )


def workspace_body(
    workspace: Mapping[str, Any],
    storage: Mapping[str, Any] | None,
    vault: Mapping[str, Any] | None,
    registry: Mapping[str, Any] | None,
    creates_group: bool = True,
) -> dict[str, Any]:
    vault_props = (vault or {}).get("properties") or {}
    return _drop_none(
        {
            "apiVersion": API_VERSION,
            "kind": "Workspace",
            "metadata": {"name": workspace.get("workspaceName")},
            "spec": {
                "environment": _environment(workspace),
                "location": workspace.get("location"),
                "resourceGroup": workspace.get("resourceGroupName"),
                "existingResourceGroup": None if creates_group else True,
                "displayName": workspace.get("friendlyName"),
                "description": workspace.get("description"),
                "sku": _get(workspace, "sku", "name"),
                "publicNetworkAccess": workspace.get("publicNetworkAccess"),
                "managedNetwork": {
                    "isolationMode": _get(workspace, "managedNetwork", "isolationMode")
                },
                "storage": {
                    "sku": _get(storage or {}, "sku", "name"),
                    "allowSharedKeyAccess": (storage or {}).get("allowSharedKeyAccess"),
                },
                "keyVault": {
                    # Absent means off: Azure only accepts `true` for this property.
                    "purgeProtection": bool(vault_props.get("enablePurgeProtection"))
                    if vault
                    else None,
                    "softDeleteRetentionDays": vault_props.get("softDeleteRetentionInDays"),
                },
                "containerRegistry": {"sku": _get(registry or {}, "sku", "name")},
                "tags": _user_tags(workspace),
            },
        }
    )


def assignment_markers(props: Mapping[str, Any]) -> dict[str, str]:
    """``workspace=``, ``environment=`` and ``compute=``/``resource=`` from the description the
    program writes (known in a preview, unlike the scope's ID); else what the scope ID says."""
    markers = dict(_MARKER.findall(str(props.get("description") or "")))
    if "workspace" not in markers:
        match = _WORKSPACE_IN_ID.search(str(props.get("scope") or ""))
        if match:
            markers["workspace"] = match.group(1)
            if match.group(2):
                markers["compute"] = match.group(2)
    return markers


def assignment_body(name: str, props: Mapping[str, Any]) -> dict[str, Any]:
    definition = str(props.get("roleDefinitionId") or "")
    markers = assignment_markers(props)
    return _drop_none(
        {
            "apiVersion": API_VERSION,
            "kind": "RoleAssignment",
            "metadata": {"name": name},
            "spec": {
                "principal": {
                    "type": props.get("principalType"),
                    # An identity created in the same update has no principal ID in a preview;
                    # no rule needs it, so the grant is still checked without it.
                    "objectId": _known(props, "principalId"),
                },
                "role": role_name_of(definition) or definition,
                "scope": {
                    "workspace": markers.get("workspace", ""),
                    "compute": markers.get("compute"),
                    "resource": markers.get("resource"),
                },
            },
        }
    )


def as_manifest(body: dict[str, Any], where: str) -> Manifest:
    """A body wrapped as a Manifest so the policy engine can evaluate it. A declared resource
    has no text behind it: findings name ``where`` (the resource) and the field, not a line."""
    doc = located_document(body, ObjectLocator(where))
    return Manifest(
        str(body["kind"]), str(body["metadata"].get("name", "")), body, [Segment((), doc)]
    )


# -- manifest rules on the whole stack --------------------------------------------------------


def _sibling(
    resources: Iterable[PolicyResource], resource_type: str, workspace: str
) -> Mapping[str, Any] | None:
    return next(
        (
            r.props
            for r in resources
            if r.resource_type == resource_type
            and _get(r.props, "tags", naming.TAG_WORKSPACE) == workspace
        ),
        None,
    )


def manifests_of(resources: list[PolicyResource]) -> Iterator[tuple[Manifest, PolicyResource]]:
    for r in resources:
        try:
            body = _body_of(r, resources)
        except UnknownValueError:
            # A value only known after create (during a preview): `pulumi up` checks it again
            # with everything known, so skipping here lets the rest of the stack be checked.
            continue
        if body is not None:
            yield as_manifest(body, f"<{r.resource_type} {r.name}>"), r


def _body_of(r: PolicyResource, resources: list[PolicyResource]) -> dict[str, Any] | None:
    if r.resource_type == WORKSPACE:
        name = str(r.props.get("workspaceName"))
        return workspace_body(
            r.props,
            _sibling(resources, STORAGE, name),
            _sibling(resources, VAULT, name),
            _sibling(resources, REGISTRY, name),
            creates_group=_sibling(resources, RESOURCE_GROUP, name) is not None,
        )
    if r.resource_type == COMPUTE:
        return compute_body(r.props)
    if r.resource_type == ROLE_ASSIGNMENT:
        return assignment_body(r.name, r.props)
    return None


def manifest_findings(
    resources: list[PolicyResource], policy_set: PolicySet | None = None
) -> list[tuple[Finding, PolicyResource]]:
    """The manifest rules over the declared resources, each finding with its resource."""
    policy_set = policy_set or load_policies()
    pairs = list(manifests_of(resources))
    environments = {
        m.name: str(m.spec.get("environment")) for m, _ in pairs if m.kind == "Workspace"
    }
    for m, r in pairs:
        if m.workspace and m.workspace not in environments:
            # A cluster or grant in a workspace this stack does not declare: trust its marker.
            environments[m.workspace] = assignment_markers(r.props).get(
                "environment"
            ) or _environment(r.props)
    ctx = Context([m for m, _ in pairs], environments)
    out: list[tuple[Finding, PolicyResource]] = []
    for m, r in pairs:
        for policy in policy_set.policies:
            if policy.matches(m, ctx):
                out.extend((finding, r) for finding in policy.evaluate(m, ctx))
    return out


def _violation(finding: Finding) -> str:
    where = f" {finding.field}" if finding.field else ""
    return f"[{finding.rule}] {finding.kind}/{finding.name}{where}: {finding.message}"


def validate_manifest_errors(args: StackValidationArgs, report: ReportViolation) -> None:
    for finding, resource in manifest_findings(args.resources):
        if finding.is_error:
            report(_violation(finding), resource.urn)


def validate_manifest_warnings(args: StackValidationArgs, report: ReportViolation) -> None:
    for finding, resource in manifest_findings(args.resources):
        if not finding.is_error:
            report(_violation(finding), resource.urn)


# -- program invariants, one resource at a time -----------------------------------------------


def validate_storage(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != STORAGE:
        return
    props = args.props
    if props.get("minimumTlsVersion") != "TLS1_2":
        report(f"storage account {args.name}: minimumTlsVersion must be TLS1_2", None)
    if props.get("allowBlobPublicAccess") is not False:
        report(f"storage account {args.name}: allowBlobPublicAccess must be false", None)
    if props.get("enableHttpsTrafficOnly") is False:
        report(f"storage account {args.name}: enableHttpsTrafficOnly must not be false", None)


def validate_key_vault(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != VAULT:
        return
    if _get(args.props, "properties", "enableRbacAuthorization") is not True:
        report(
            f"key vault {args.name}: enableRbacAuthorization must be true (no access policies)",
            None,
        )


def validate_registry(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == REGISTRY and args.props.get("adminUserEnabled") is not False:
        report(f"container registry {args.name}: adminUserEnabled must be false", None)


def validate_compute(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != COMPUTE:
        return
    props = args.props.get("properties") or {}
    aml = props.get("properties")
    if not isinstance(aml, Mapping) or "vmSize" not in aml:
        # The signature of a plain dict in the union-typed property: snake_case keys that
        # Azure ignores, leaving a cluster with default settings.
        report(f"compute {args.name}: properties.properties.vmSize is missing", None)
        return
    if aml.get("remoteLoginPortPublicAccess") != "Disabled":
        report(f"compute {args.name}: remoteLoginPortPublicAccess must be Disabled (no SSH)", None)
    if props.get("disableLocalAuth") is not True:
        report(f"compute {args.name}: disableLocalAuth must be true", None)


def validate_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("azure-native:") or "tags" not in args.props:
        return
    tags = args.props.get("tags") or {}
    missing = [t for t in PROVENANCE_TAGS if not tags.get(t)]
    if missing:
        report(f"{args.name}: missing tags {', '.join(missing)} (provenance of the change)", None)


# -- program invariants across resources ------------------------------------------------------

# Resource type -> where its public network access settings are. Azure's default is Enabled.
PUBLIC_ACCESS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    STORAGE: (("publicNetworkAccess",),),
    VAULT: (("properties", "publicNetworkAccess"),),
    REGISTRY: (("publicNetworkAccess",),),
    APP_INSIGHTS: (("publicNetworkAccessForIngestion",), ("publicNetworkAccessForQuery",)),
}


def validate_private_network(args: StackValidationArgs, report: ReportViolation) -> None:
    """A private workspace's storage, key vault, registry and Application Insights are private.

    Any one of them left public is a way around the workspace's private endpoints: to its data,
    its secrets, its images or its telemetry.
    """
    private = {
        str(_known(r.props, "workspaceName"))
        for r in args.resources
        if r.resource_type == WORKSPACE and _known(r.props, "publicNetworkAccess") == "Disabled"
    }
    for r in args.resources:
        paths = PUBLIC_ACCESS.get(r.resource_type)
        workspace = _get(r.props, "tags", naming.TAG_WORKSPACE)
        if paths is None or workspace not in private:
            continue
        for path in paths:
            try:
                value = _get(r.props, *path) or "Enabled"
            except UnknownValueError:
                continue
            if value != "Disabled":
                report(
                    f"{r.name}: {'.'.join(path)} is {value!r}, but workspace {workspace} has "
                    "no public network access; it must be Disabled",
                    r.urn,
                )


def _stack(
    name: str, description: str, validate: StackValidation, level: EnforcementLevel
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )


def policies() -> list[Policy]:
    mandatory, advisory = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
    return [
        _stack(
            "amlops-manifest-rules",
            "The error rules of policies/rules/, on the declared resources.",
            validate_manifest_errors,
            mandatory,
        ),
        _stack(
            "amlops-manifest-warnings",
            "The warning rules of policies/rules/, on the declared resources.",
            validate_manifest_warnings,
            advisory,
        ),
        ResourceValidationPolicy(
            name="amlops-program-invariants",
            description="Settings the amlops components always make and no manifest can undo.",
            validate=[
                validate_storage,
                validate_key_vault,
                validate_registry,
                validate_compute,
                validate_tags,
            ],
            enforcement_level=mandatory,
        ),
        _stack(
            "amlops-private-network",
            "Nothing a private workspace depends on is reachable from the internet.",
            validate_private_network,
            mandatory,
        ),
    ]
