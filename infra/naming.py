"""Physical Azure names and tags: deterministic, so a re-run finds what the last run created.

Storage accounts, key vaults and container registries have globally unique names with tight
character rules, so their names get a short suffix hashed from the subscription, resource group
and workspace (what Bicep's ``uniqueString(resourceGroup().id)`` does). Role assignments are
named by a UUID5 of scope, principal and role: the same grant always gets the same name, so a
re-run or a second stack can never create a duplicate assignment.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping

from amlops.core.provenance import TAG_COMMIT as TAG_COMMIT
from amlops.core.provenance import TAG_MANIFEST as TAG_MANIFEST

# Fixed for the life of the project: changing it renames (re-creates) every role assignment.
ASSIGNMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://amlops.io/role-assignments")

# Tag keys. Azure forbids `/` in tag names, hence no `amlops.io/...` prefixes here. The commit
# and manifest keys are the ones every amlops driver tags its assets with (amlops.core.provenance).
TAG_ENVIRONMENT = "environment"
TAG_MANAGED_BY = "managed-by"
TAG_WORKSPACE = "amlops-workspace"
SYSTEM_TAGS = (TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_WORKSPACE, TAG_MANIFEST, TAG_COMMIT)

_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def unique_suffix(*parts: str, length: int = 6) -> str:
    digest = hashlib.sha256("/".join(p.lower() for p in parts).encode()).hexdigest()
    return digest[:length]


def _alnum(value: str) -> str:
    return _NOT_ALNUM.sub("", value.lower())


def storage_account_name(workspace: str, resource_group: str, subscription_id: str) -> str:
    """3-24 characters, lower-case letters and digits, globally unique."""
    return f"st{_alnum(workspace)[:16]}{unique_suffix(subscription_id, resource_group, workspace)}"


def key_vault_name(workspace: str, resource_group: str, subscription_id: str) -> str:
    """3-24 characters, starts with a letter, globally unique (hyphens avoided: no `--` risk)."""
    return f"kv{_alnum(workspace)[:16]}{unique_suffix(subscription_id, resource_group, workspace)}"


def container_registry_name(workspace: str, resource_group: str, subscription_id: str) -> str:
    """5-50 characters, letters and digits only, globally unique."""
    return f"cr{_alnum(workspace)[:40]}{unique_suffix(subscription_id, resource_group, workspace)}"


def log_analytics_name(workspace: str) -> str:
    return f"log-{workspace}"


def app_insights_name(workspace: str) -> str:
    return f"appi-{workspace}"


def assignment_name(scope: str, principal_id: str, role_definition_guid: str) -> str:
    """The role assignment's name (a GUID): UUID5 of scope, principal and role.

    Azure compares scopes and object IDs case-insensitively, so they are folded first: the
    same grant written with different casing must not become a second assignment.
    """
    key = f"{scope.lower().rstrip('/')}|{principal_id.lower()}|{role_definition_guid.lower()}"
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, key))


def merge_tags(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win: stack defaults, then the manifest's tags, then the system tags."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return merged


NameFn = Callable[[str, str, str], str]
