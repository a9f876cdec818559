"""Running the program without Azure: Pulumi's mock monitor, with realistic IDs, recorded.

Used by the tests, the benchmark and ``amlops plan --infra``. The mocks answer like Azure
Resource Manager would (resource IDs built from the names, a principal ID for an identity, an
MLflow URI for a workspace) under a placeholder subscription, so IDs and role-assignment names
come out deterministic. What comes out is what the program *declares*: there is no state, so
nothing here says what would change in a real subscription.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from infra import program
from infra.config import StackConfig
from infra.specs import Platform

P = ParamSpec("P")
PROJECT = "amlops"
MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
MOCK_TENANT_ID = "00000000-0000-0000-0000-00000000a0a0"
MOCK_CLIENT_OBJECT_ID = "00000000-0000-0000-0000-00000000c11e"
_MOCK_NAMESPACE = uuid.UUID("6d6f636b-0000-4000-8000-616d6c6f7073")

_RG = "/subscriptions/{subscription}/resourceGroups/{resourceGroupName}"
# type token -> (ARM ID template over the inputs, the input holding the physical name)
ARM_IDS: dict[str, tuple[str, str]] = {
    "azure-native:resources:ResourceGroup": (_RG, "resourceGroupName"),
    "azure-native:storage:StorageAccount": (
        _RG + "/providers/Microsoft.Storage/storageAccounts/{accountName}",
        "accountName",
    ),
    "azure-native:keyvault:Vault": (
        _RG + "/providers/Microsoft.KeyVault/vaults/{vaultName}",
        "vaultName",
    ),
    "azure-native:operationalinsights:Workspace": (
        _RG + "/providers/Microsoft.OperationalInsights/workspaces/{workspaceName}",
        "workspaceName",
    ),
    "azure-native:applicationinsights:Component": (
        _RG + "/providers/Microsoft.Insights/components/{resourceName}",
        "resourceName",
    ),
    "azure-native:containerregistry:Registry": (
        _RG + "/providers/Microsoft.ContainerRegistry/registries/{registryName}",
        "registryName",
    ),
    "azure-native:machinelearningservices:Workspace": (
        _RG + "/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}",
        "workspaceName",
    ),
    "azure-native:machinelearningservices:Compute": (
        _RG
        + "/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}"
        + "/computes/{computeName}",
        "computeName",
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        _RG + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}",
        "resourceName",
    ),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        _RG
        + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}"
        + "/federatedIdentityCredentials/{federatedIdentityCredentialResourceName}",
        "federatedIdentityCredentialResourceName",
    ),
    "azure-native:authorization:RoleAssignment": (
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
        "roleAssignmentName",
    ),
}


def mock_guid(*parts: str) -> str:
    return str(uuid.uuid5(_MOCK_NAMESPACE, "/".join(parts)))


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and the one invoke the program makes, like ARM would."""

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs: dict[str, Any] = dict(args.inputs)
        if not args.custom:  # component resources have no ID and no state of their own
            return None, {}
        template = ARM_IDS.get(args.typ)
        if template is None:
            return f"{args.name}-id", inputs
        pattern, name_key = template
        arm_id = pattern.format_map({"subscription": MOCK_SUBSCRIPTION_ID, **inputs})
        state = {**inputs, "name": inputs.get(name_key, args.name)}
        if args.typ == "azure-native:machinelearningservices:Workspace":
            state["mlFlowTrackingUri"] = (
                f"azureml://{inputs.get('location')}.api.azureml.ms/mlflow/v1.0{arm_id}"
            )
            state["workspaceId"] = mock_guid(arm_id)
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            state["principalId"] = mock_guid(arm_id, "principal")
            state["clientId"] = mock_guid(arm_id, "client")
            state["tenantId"] = MOCK_TENANT_ID
        return arm_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "azure-native:authorization:getClientConfig":
            return (
                {
                    "clientId": MOCK_CLIENT_OBJECT_ID,
                    "objectId": MOCK_CLIENT_OBJECT_ID,
                    "subscriptionId": MOCK_SUBSCRIPTION_ID,
                    "tenantId": MOCK_TENANT_ID,
                },
                [],
            )
        return {}, []


@dataclass(frozen=True)
class DeclaredResource:
    """One registration the program made: what ``amlops plan --infra`` lists."""

    urn: str
    type: str
    name: str
    parent: str | None  # logical name of the parent; None at the stack root
    custom: bool
    protect: bool
    dependencies: tuple[str, ...]  # logical names
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "dependencies": list(self.dependencies),
            "protect": self.protect,
            "inputs": self.inputs,
        }


@dataclass
class _Registration:
    urn: str
    type: str
    name: str
    parent_urn: str
    custom: bool
    protect: bool
    dependency_urns: tuple[str, ...]
    inputs: dict[str, Any]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping every registration with its parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self._lock = threading.Lock()
        self._registrations: list[_Registration] = []

    # Same name as the gRPC method it overrides; the base class is untyped.
    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object)
        with self._lock:
            self._registrations.append(
                _Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent_urn=request.parent,
                    custom=bool(request.custom),
                    protect=bool(request.protect),
                    dependency_urns=tuple(request.dependencies),
                    inputs=_plain(inputs),
                )
            )
        return response

    def declared(self) -> list[DeclaredResource]:
        """All registrations, depth first along parents, siblings in creation order.

        A resource's rank is the length of its longest dependency chain; a component ranks
        as its earliest descendant. Siblings sort by (rank, name): the order Azure would see
        them created in, and the same order on every run.
        """
        with self._lock:
            regs = list(self._registrations)
        by_urn = {r.urn: r for r in regs}
        children: dict[str | None, list[_Registration]] = {}
        for r in regs:
            parent = r.parent_urn if r.parent_urn in by_urn else None
            children.setdefault(parent, []).append(r)
        ranks: dict[str, int] = {}

        def rank(r: _Registration) -> int:
            if r.urn not in ranks:
                ranks[r.urn] = 0  # guards against cycles; the engine would reject them anyway
                if r.custom:
                    deps = [by_urn[u] for u in r.dependency_urns if u in by_urn]
                    ranks[r.urn] = 1 + max((rank(d) for d in deps), default=-1)
                else:
                    kids = children.get(r.urn, [])
                    ranks[r.urn] = min((rank(k) for k in kids), default=0)
            return ranks[r.urn]

        out: list[DeclaredResource] = []

        def walk(parent: str | None) -> None:
            for r in sorted(children.get(parent, []), key=lambda x: (rank(x), x.name, x.type)):
                out.append(
                    DeclaredResource(
                        urn=r.urn,
                        type=r.type,
                        name=r.name,
                        parent=by_urn[r.parent_urn].name if r.parent_urn in by_urn else None,
                        custom=r.custom,
                        protect=r.protect,
                        dependencies=tuple(
                            sorted({by_urn[u].name for u in r.dependency_urns if u in by_urn})
                        ),
                        inputs=r.inputs,
                    )
                )
                walk(r.urn)

        walk(None)
        return out

    def duplicate_urns(self) -> list[str]:
        """URNs registered twice: the real engine rejects these, the mock silently overwrites."""
        with self._lock:
            urns = [r.urn for r in self._registrations]
        return sorted({u for u in urns if urns.count(u) > 1})


def _plain(value: Any) -> Any:
    """Inputs as JSON-friendly data (the deserializer may hand back resource references)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format has only doubles; node counts read better as ints
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def install(stack: str, monitor: RecordingMonitor | None = None) -> RecordingMonitor:
    """Point the Pulumi runtime at a fresh recording mock monitor (call before declaring)."""
    monitor = monitor or RecordingMonitor(PlatformMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks,
        project=PROJECT,
        stack=stack,
        preview=False,
        monitor=monitor,
    )
    return monitor


def pulumi_test(fn: Callable[P, Any]) -> Callable[P, None]:
    """``pulumi.runtime.test`` with types: runs ``fn`` and waits for every RPC and for the
    Output it returns, so a failing ``apply`` fails the caller instead of vanishing."""
    wrapped: Callable[P, None] = pulumi.runtime.test(fn)  # type: ignore[no-untyped-call]
    return wrapped


@dataclass(frozen=True)
class OfflineRun:
    resources: list[DeclaredResource]
    outputs: dict[str, Any]  # the stack outputs, resolved
    duplicate_urns: list[str]


def run_offline(platform: Platform, config: StackConfig) -> OfflineRun:
    """Declare ``platform`` under a fresh recording mock monitor and return what was declared."""
    monitor = install(config.stack)
    captured: dict[str, Any] = {}

    def declare_all() -> pulumi.Output[None]:
        outputs = program.declare(platform, config)
        return pulumi.Output.from_input(outputs.exports()).apply(captured.update)

    pulumi_test(declare_all)()
    return OfflineRun(monitor.declared(), captured, monitor.duplicate_urns())
