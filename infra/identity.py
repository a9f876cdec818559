"""OperatorIdentity: the managed identity the Kopf operator runs as, and exactly its grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import managedidentity

from infra.access import declare_assignment
from infra.config import OPERATOR_SUBJECT
from infra.specs import AssignmentSpec

# The audience AKS workload identity requests tokens for (the Entra ID token exchange).
AZURE_AD_AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class OperatorIdentityArgs:
    identity_name: str
    resource_group_name: pulumi.Input[str]
    location: str
    tags: Mapping[str, str]
    oidc_issuer: str | None
    # Only the RoleAssignment manifests with `principal.operatorIdentity: true`: the operator
    # holds what Git says and nothing the program adds on its own.
    assignments: Sequence[AssignmentSpec]
    scopes: Mapping[str, pulumi.Input[str]]
    subscription_id: pulumi.Input[str]


class OperatorIdentity(pulumi.ComponentResource):
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    identity_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: OperatorIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("amlops:infra:OperatorIdentity", name, None, opts)
        # Keyword form, not the *Args classes: their `resource_name` field collides with the
        # logical name when the SDK unpacks them (TypeError: multiple values for resource_name).
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=args.identity_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.oidc_issuer:
            managedidentity.FederatedIdentityCredential(
                f"{name}-aks",
                federated_identity_credential_resource_name="aks-amlops-operator",
                resource_name_=identity.name,
                resource_group_name=args.resource_group_name,
                issuer=args.oidc_issuer,
                subject=OPERATOR_SUBJECT,
                audiences=[AZURE_AD_AUDIENCE],
                opts=pulumi.ResourceOptions(parent=self),
            )
        for spec in args.assignments:
            declare_assignment(
                # Grant names are unique per workspace only; the operator's span workspaces.
                f"{name}-{spec.scope.workspace}-{spec.name}",
                spec,
                principal_id=identity.principal_id,
                # Given the type, ARM skips the directory lookup that fails (PrincipalNotFound)
                # while a just-created identity is still replicating.
                principal_type="ServicePrincipal",
                scope=args.scopes[spec.scope.key],
                subscription_id=args.subscription_id,
                parent=self,
            )
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.identity_id = identity.id
        self.register_outputs(
            {
                "clientId": self.client_id,
                "principalId": self.principal_id,
                "identityId": self.identity_id,
            }
        )
