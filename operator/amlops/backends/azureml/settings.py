"""Where each workspace is in Azure, and how the backend talks to it: ``AMLOPS_AZURE_*``.

A workspace's coordinates (subscription, resource group, Azure workspace name) are taken field
by field, first found wins:

1. the settings: ``AMLOPS_AZURE_WORKSPACES`` (a JSON map, amlops workspace name ->
   ``{"subscription", "resourceGroup", "name"}``, any of them), then
   ``AMLOPS_AZURE_SUBSCRIPTION_ID`` / ``AMLOPS_AZURE_RESOURCE_GROUP`` (every workspace);
2. the repository config's ``workspace:`` (``amlops.yaml``), for the workspace it names;
3. the Workspace manifest: ``spec.resourceGroup``.

The Azure workspace name is the amlops workspace name unless (1) or (2) say otherwise. The
subscription has no manifest field: it comes from (1) or (2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from amlops.backends.base import BackendError
from amlops.core.config import DefaultWorkspace
from amlops.core.manifests import Manifest

ENV_SUBSCRIPTION = "AMLOPS_AZURE_SUBSCRIPTION_ID"
ENV_RESOURCE_GROUP = "AMLOPS_AZURE_RESOURCE_GROUP"
ENV_WORKSPACES = "AMLOPS_AZURE_WORKSPACES"
ENV_OWNER = "AMLOPS_AZURE_OWNER"
ENV_UPLOAD_TIMEOUT = "AMLOPS_AZURE_UPLOAD_TIMEOUT"
ENV_RETRY_TOTAL = "AMLOPS_AZURE_RETRY_TOTAL"
ENV_SNAPSHOT_TTL = "AMLOPS_AZURE_SNAPSHOT_TTL"


class SettingsError(ValueError):
    """An ``AMLOPS_AZURE_*`` value that cannot be used; names the variable."""


@dataclass(frozen=True)
class Coordinates:
    subscription_id: str
    resource_group: str
    workspace_name: str


class Transport(TypedDict):
    """What MLClient passes on to azure-core: its ``RetryPolicy``'s and the transport's."""

    retry_total: int
    retry_backoff_factor: float
    retry_backoff_max: float
    connection_timeout: float
    read_timeout: float


@dataclass(frozen=True)
class AzureSettings:
    subscription_id: str = ""
    resource_group: str = ""
    # amlops workspace name -> {"subscription", "resourceGroup", "name"}
    workspaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # who the backend's assets belong to (the ``amlops-owner`` tag); the driver sets a default
    owner: str = ""
    # azure-core's RetryPolicy (429 and 5xx, Retry-After honoured): retries per request, the
    # backoff factor and its cap in seconds
    retry_total: int = 4
    retry_backoff_factor: float = 0.8
    retry_backoff_max: float = 30.0
    # per request: connecting, and waiting for an answer
    connection_timeout_s: float = 20.0
    read_timeout_s: float = 120.0
    # an upload (model files, a deployment's code) and the calls that make one, end to end
    upload_timeout_s: float = 900.0
    # how long a model version read is reused (an endpoint reads what its Models just read)
    model_cache_s: float = 10.0
    # how long one list of a kind answers the drift checks' reads of that kind (0: GET each
    # object); see amlops.backends.azureml.snapshots
    snapshot_ttl_s: float = 30.0

    def transport(self) -> Transport:
        """The retry and timeout settings as MLClient's keyword arguments."""
        return {
            "retry_total": self.retry_total,
            "retry_backoff_factor": self.retry_backoff_factor,
            "retry_backoff_max": self.retry_backoff_max,
            "connection_timeout": self.connection_timeout_s,
            "read_timeout": self.read_timeout_s,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureSettings:
        source = os.environ if env is None else env
        workspaces: dict[str, dict[str, str]] = {}
        raw = source.get(ENV_WORKSPACES, "")
        if raw:
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise SettingsError(f"{ENV_WORKSPACES}: not JSON: {exc}") from exc
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise SettingsError(
                    f'{ENV_WORKSPACES}: write {{"WORKSPACE": {{"subscription": "...", '
                    '"resourceGroup": "...", "name": "..."}}'
                )
            for ws, entry in data.items():
                unknown = set(entry) - {"subscription", "resourceGroup", "name"}
                if unknown:
                    raise SettingsError(f"{ENV_WORKSPACES}: {ws}: unknown {sorted(unknown)}")
                workspaces[str(ws)] = {k: str(v) for k, v in entry.items()}
        values: dict[str, Any] = {}
        for name, key, kind in (
            (ENV_UPLOAD_TIMEOUT, "upload_timeout_s", float),
            (ENV_RETRY_TOTAL, "retry_total", int),
            (ENV_SNAPSHOT_TTL, "snapshot_ttl_s", float),
        ):
            if source.get(name):
                try:
                    values[key] = kind(source[name])
                except ValueError as exc:
                    raise SettingsError(f"{name}={source[name]!r}: {exc}") from exc
        return cls(
            subscription_id=source.get(ENV_SUBSCRIPTION, ""),
            resource_group=source.get(ENV_RESOURCE_GROUP, ""),
            workspaces=workspaces,
            owner=source.get(ENV_OWNER, ""),
            **values,
        )


@dataclass
class Locator:
    """Resolves workspaces to coordinates, by the precedence in this module's docstring."""

    settings: AzureSettings
    config: DefaultWorkspace | None = None
    resource_groups: dict[str, str] = field(default_factory=dict)  # from Workspace manifests

    def learn(self, manifests: Sequence[Manifest]) -> None:
        for m in manifests:
            if m.kind == "Workspace" and isinstance(m.spec.get("resourceGroup"), str):
                self.resource_groups[m.name] = m.spec["resourceGroup"]

    def coordinates(self, workspace: str) -> Coordinates:
        mapped = self.settings.workspaces.get(workspace, {})
        config = self.config if self.config is not None and self.config.name == workspace else None
        subscription = (
            mapped.get("subscription")
            or self.settings.subscription_id
            or (config.subscription if config else None)
        )
        group = (
            mapped.get("resourceGroup")
            or self.settings.resource_group
            or (config.resource_group if config else None)
            or self.resource_groups.get(workspace)
        )
        missing = [
            what
            for what, value in (
                (
                    f"the subscription ({ENV_SUBSCRIPTION}, or amlops.yaml workspace.subscription)",
                    subscription,
                ),
                (
                    f"the resource group ({ENV_RESOURCE_GROUP}, amlops.yaml "
                    "workspace.resourceGroup or the Workspace's spec.resourceGroup)",
                    group,
                ),
            )
            if not value
        ]
        if missing or subscription is None or group is None:
            raise BackendError(
                f"workspace {workspace}: Azure ML needs "
                + " and ".join(missing)
                + f"; or map it in {ENV_WORKSPACES}"
            )
        return Coordinates(subscription, group, mapped.get("name") or workspace)
