"""WorkspaceBinding: which namespace may manage which workspace, and as whom.

A platform administrator creates one in a tenant's namespace (Azure Service Operator's
per-namespace credential, Flux's tenant RBAC): ``spec.workspace`` names the workspace the
namespace's Models, Pipelines, Endpoints and ServerlessEndpoints may name, and
``spec.identity`` the Azure identity the operator acts as for them - ``clientId`` (workload
identity: the federated token of the operator's ServiceAccount exchanged for that managed
identity or app) and, for a client secret, ``secretRef`` (a Secret in the binding's namespace
holding ``clientSecret``, read when the backend is opened and never written anywhere).

Once a workspace has a binding (or the operator runs with ``AMLOPS_TENANCY=true``), an object
in a namespace without one to its workspace is refused at admission
(``tenancy.namespace-not-bound``) and stalled by the operator (``NamespaceNotBound``). Not an
operator kind: no backend reconciles it, it is never applied from Git (a GitSource applies
``ORDER`` only), so a tenant cannot bind itself through its own repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amlops.kinds import base

KIND_NAME = "WorkspaceBinding"
RULE_NOT_BOUND = "tenancy.namespace-not-bound"
REASON_NOT_BOUND = "NamespaceNotBound"
SECRET_KEY = "clientSecret"  # the key of the client secret in spec.identity.secretRef's Secret


@dataclass(frozen=True)
class Identity:
    """An Azure identity as a binding names it: what tells two namespaces' backends apart.
    Holds names only (a client id, a Secret's name), never a secret value."""

    client_id: str = ""
    tenant_id: str = ""
    secret: str = ""  # the Secret's name (client secret), "" for workload identity
    namespace: str = ""  # where the Secret is: the binding's namespace

    @property
    def key(self) -> str:
        """What a backend is cached under besides its workspace; "" is the operator's own.
        Workload identity is the client id's wherever it is bound; a client secret is the
        Secret's of one namespace."""
        if not self.client_id:
            return ""
        where = f"{self.namespace}/{self.secret}" if self.secret else ""
        return f"{self.tenant_id}/{self.client_id}/{where}"

    def describe(self) -> str:
        """For logs and status: the client id (not a secret) and how it authenticates."""
        how = f"secret {self.secret}" if self.secret else "workload identity"
        return f"client {self.client_id or '?'} ({how})"


@dataclass(frozen=True)
class Binding:
    namespace: str
    name: str
    workspace: str
    identity: Identity


def parse(namespace: str, name: str, spec: Mapping[str, Any]) -> Binding | None:
    """A binding as the operator keeps it; None when it names no workspace."""
    workspace = spec.get("workspace")
    if not isinstance(workspace, str) or not workspace:
        return None
    identity = base.mapping(spec.get("identity"))
    secret = base.mapping(identity.get("secretRef")).get("name")

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    return Binding(
        namespace,
        name,
        workspace,
        Identity(
            text(identity.get("clientId")),
            text(identity.get("tenantId")),
            text(secret),
            namespace if secret else "",
        ),
    )


KIND = base.Kind(
    name=KIND_NAME,
    # read by the operator (an index), neither applied by Pulumi nor reconciled by a backend
    engine="tenancy",
    # in a repository (`amlops validate`), the workspace it binds must be declared
    references=base.check_workspace,
    crd=base.Crd(
        short_names=("amlwsb",),
        columns=(base.Column("Client", ".spec.identity.clientId"),),
    ),
)
