"""Built-in Azure role names -> role definition IDs: the one table the program resolves roles with.

The IDs are the same in every Azure tenant (built-in roles). The table is deliberately short:
the roles an ML platform hands out. A role that is not here is an error at the manifest's line,
not a guess; add a row (with the ID from `az role definition list --name "<role>"`) to allow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

BUILTIN_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
        "AzureML Compute Operator": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
        "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    }
)

# Recognised but never granted by the program: the deploy-time policy pack names them in its
# findings (rbac.prod-no-owner) when a role assignment was declared outside the components.
PRIVILEGED_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    }
)

ROLE_NAMES_BY_ID: Mapping[str, str] = MappingProxyType(
    {role_id: name for name, role_id in {**BUILTIN_ROLES, **PRIVILEGED_ROLES}.items()}
)


def role_id(name: str) -> str | None:
    """The definition ID of a built-in role, matching names case-insensitively as Azure does."""
    folded = name.strip().casefold()
    return next((rid for rname, rid in BUILTIN_ROLES.items() if rname.casefold() == folded), None)


def role_definition_id(subscription_id: str, definition_id: str) -> str:
    """The subscription-scoped resource ID that role assignments take as ``roleDefinitionId``."""
    return (
        f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{definition_id}"
    )


def role_name_of(role_definition: str) -> str | None:
    """The role name of a ``roleDefinitionId`` (any scope prefix) the tables know, or None."""
    return ROLE_NAMES_BY_ID.get(role_definition.rstrip("/").rsplit("/", 1)[-1].lower())
