"""Access: the role assignments people and groups hold on a workspace and what is in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_azure_native import authorization

from infra import naming
from infra.roles import role_definition_id
from infra.specs import AssignmentSpec


def declare_assignment(
    resource_name: str,
    spec: AssignmentSpec,
    *,
    principal_id: pulumi.Input[str],
    principal_type: str,
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> authorization.RoleAssignment:
    """One role assignment, named by UUID5 of scope, principal and role (see naming)."""

    def name_of(values: list[Any]) -> str:
        return naming.assignment_name(str(values[0]), str(values[1]), spec.role_guid)

    return authorization.RoleAssignment(
        resource_name,
        authorization.RoleAssignmentArgs(
            role_assignment_name=pulumi.Output.all(scope, principal_id).apply(name_of),
            principal_id=principal_id,
            principal_type=principal_type,
            role_definition_id=pulumi.Output.from_input(subscription_id).apply(
                lambda sub: role_definition_id(sub, spec.role_guid)
            ),
            scope=scope,
            description=spec.description,
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class AccessArgs:
    assignments: Sequence[AssignmentSpec]
    scopes: Mapping[str, pulumi.Input[str]]  # Scope.key -> Azure resource ID
    subscription_id: pulumi.Input[str]


class Access(pulumi.ComponentResource):
    """Role assignments for users, groups and service principals named in the manifests."""

    assignment_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("amlops:infra:Access", name, None, opts)
        declared: dict[str, pulumi.Output[str]] = {}
        for spec in args.assignments:
            if spec.principal is None:
                raise ValueError(f"{spec.name}: operator grants belong to OperatorIdentity")
            assignment = declare_assignment(
                f"{name}-{spec.name}",
                spec,
                principal_id=spec.principal.object_id,
                principal_type=spec.principal.type,
                scope=args.scopes[spec.scope.key],
                subscription_id=args.subscription_id,
                parent=self,
            )
            declared[spec.name] = assignment.id
        self.assignment_ids = (
            pulumi.Output.all(**declared) if declared else pulumi.Output.from_input({})
        )
        self.register_outputs({"assignmentIds": self.assignment_ids})
