"""Role definition IDs as role assignments take them.

The role tables themselves (name -> built-in role definition ID) are the core's
(``amlops.core.azure``): `amlops validate` checks manifests against the same table the program
resolves names with. ``role_name_of`` is re-exported for the readers of declared resources.
"""

from __future__ import annotations

from amlops.core.azure import role_name_of

__all__ = ["role_definition_id", "role_name_of"]


def role_definition_id(subscription_id: str, definition_id: str) -> str:
    """The subscription-scoped resource ID that role assignments take as ``roleDefinitionId``."""
    return (
        f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{definition_id}"
    )
