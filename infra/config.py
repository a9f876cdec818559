"""Stack configuration (Pulumi.<stack>.yaml, namespace ``amlops``) as one frozen value.

Read once in ``__main__.py``; the components never look at ``pulumi.Config`` themselves, so
tests, the offline plan and the benchmark hand them a ``StackConfig`` built in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from amlops.core.provenance import checkout_commit

NAMESPACE = "amlops"
# The operator's Kubernetes service account (operator/deploy/): the subject AKS workload
# identity presents. Fixed, so the federated credential cannot drift from the Deployment.
OPERATOR_NAMESPACE = "amlops-system"
OPERATOR_SERVICE_ACCOUNT = "amlops-operator"
OPERATOR_SUBJECT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"
# The amlops-commit tag when neither the stack, CI nor Git names a commit: a tag Azure keeps
# rather than one left out, so the provenance policy still sees the key.
UNKNOWN_COMMIT = "unknown"


class ConfigError(pulumi.RunError):
    """Stack configuration the program cannot use (names the key and the stack file)."""


@dataclass(frozen=True)
class OperatorIdentityConfig:
    """``amlops:operatorIdentity``: where the operator's managed identity lives and whom it trusts.

    ``resource_group`` defaults to the resource group of the stack's first workspace; without
    ``oidc_issuer`` (the AKS cluster's OIDC issuer URL) no federated credential is declared.
    """

    name: str | None = None
    resource_group: str | None = None
    location: str | None = None
    oidc_issuer: str | None = None


@dataclass(frozen=True)
class StackConfig:
    stack: str
    environment: str
    manifests: Path
    project_dir: Path
    commit: str
    location: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    operator: OperatorIdentityConfig | None = field(default_factory=OperatorIdentityConfig)

    @property
    def identity_name(self) -> str:
        configured = self.operator.name if self.operator else None
        return configured or f"id-amlops-operator-{self.environment}"


STRING_KEYS = ("environment", "manifests", "location", "commit")
OBJECT_KEYS = ("tags", "operatorIdentity")


def from_pulumi(cfg: pulumi.Config, stack: str, project_dir: Path) -> StackConfig:
    """Build the stack's config from ``pulumi.Config("amlops")`` (what ``pulumi up`` passes)."""
    values: dict[str, Any] = {key: cfg.get(key) for key in STRING_KEYS}
    values.update({key: cfg.get_object(key) for key in OBJECT_KEYS})
    return from_values(values, stack, project_dir)


def read_stack_file(project_dir: Path, stack: str) -> dict[str, Any]:
    """The ``amlops:`` keys of Pulumi.<stack>.yaml, for running the program without the CLI."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: create the stack with `pulumi stack init {stack}`"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw = data.get("config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: `config:` must be a mapping")
    prefix = f"{NAMESPACE}:"
    return {
        k[len(prefix) :]: v for k, v in raw.items() if isinstance(k, str) and k.startswith(prefix)
    }


def _mapping(values: Mapping[str, Any], key: str, stack: str) -> dict[str, Any]:
    value = values.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{NAMESPACE}:{key} in Pulumi.{stack}.yaml must be a mapping")
    return value


def from_values(values: Mapping[str, Any], stack: str, project_dir: Path) -> StackConfig:
    """The one place config keys are interpreted, whichever way they were read."""
    environment = values.get("environment")
    if not environment:
        raise ConfigError(
            f"{NAMESPACE}:environment is not set for stack {stack!r}: run "
            f"`pulumi config set {NAMESPACE}:environment dev` (it selects the Workspace "
            "manifests this stack provisions)"
        )
    manifests = Path(values.get("manifests") or "manifests")
    if not manifests.is_absolute():
        manifests = project_dir / manifests
    raw_operator = _mapping(values, "operatorIdentity", stack)
    operator: OperatorIdentityConfig | None = None
    if raw_operator.get("enabled", True) is not False:
        operator = OperatorIdentityConfig(
            name=raw_operator.get("name"),
            resource_group=raw_operator.get("resourceGroup"),
            location=raw_operator.get("location"),
            oidc_issuer=raw_operator.get("oidcIssuer"),
        )
    return StackConfig(
        stack=stack,
        environment=str(environment),
        manifests=manifests,
        project_dir=project_dir,
        commit=str(values.get("commit") or checkout_commit(project_dir) or UNKNOWN_COMMIT),
        location=values.get("location"),
        tags={str(k): str(v) for k, v in _mapping(values, "tags", stack).items()},
        operator=operator,
    )
