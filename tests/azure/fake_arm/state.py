"""The fake's resources: ARM resource ids to JSON bodies, plus what is not in a body (keys,
logs, long-running operations). All access goes through one lock."""

from __future__ import annotations

import copy
import datetime
import itertools
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .faults import ProvisioningFailure

PROVIDER = "Microsoft.MachineLearningServices"


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_key() -> str:
    """A fresh endpoint key (random, never logged)."""
    return secrets.token_urlsafe(24)


@dataclass
class Operation:
    """A long-running operation: finishes when the clock reaches ``started + duration``."""

    id: str
    resource_id: str
    kind: str  # plural segment: onlineEndpoints, deployments, serverlessEndpoints, ...
    action: str  # create | delete | regenerateKeys
    started: float
    duration: float
    failure: ProvisioningFailure | None = None
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    start_time: str = field(default_factory=utcnow)
    end_time: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status != "InProgress"


class State:
    """Resources by lower-cased ARM id. Tests read and change it through the helpers."""

    def __init__(self, clock: Clock, *, subscription: str, resource_group: str, location: str):
        self.clock = clock
        self.subscription = subscription
        self.resource_group = resource_group
        self.location = location
        self.lock = threading.RLock()
        self.resources: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, str]] = {}
        self.logs: dict[str, list[str]] = {}
        self.operations: dict[str, Operation] = {}
        self._order = itertools.count(1)
        self._created_order: dict[str, int] = {}

    # ------------------------------------------------------------------ ids
    def workspace_id(self, workspace: str) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{workspace}"
        )

    def resource_id(self, workspace: str, *segments: str) -> str:
        return "/".join([self.workspace_id(workspace), *segments])

    # ------------------------------------------------------------------ raw access
    @contextmanager
    def locked(self) -> Iterator[State]:
        with self.lock:
            yield self

    def get(self, resource_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.resources.get(resource_id.lower())
            return copy.deepcopy(found) if found is not None else None

    def put(self, resource_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            key = resource_id.lower()
            if key not in self._created_order:
                self._created_order[key] = next(self._order)
            self.resources[key] = copy.deepcopy(body)

    def delete(self, resource_id: str) -> bool:
        """Remove a resource and everything under it; True if it existed."""
        with self.lock:
            key = resource_id.lower()
            existed = key in self.resources
            for k in [k for k in self.resources if k == key or k.startswith(key + "/")]:
                del self.resources[k]
                self._created_order.pop(k, None)
                self.keys.pop(k, None)
                self.logs.pop(k, None)
            return existed

    def children(self, parent_id: str, segment: str) -> list[dict[str, Any]]:
        """Direct children ``{parent}/{segment}/{name}``, oldest first."""
        prefix = f"{parent_id.lower()}/{segment.lower()}/"
        with self.lock:
            keys = [
                k for k in self.resources if k.startswith(prefix) and "/" not in k[len(prefix) :]
            ]
            keys.sort(key=lambda k: self._created_order.get(k, 0))
            return [copy.deepcopy(self.resources[k]) for k in keys]

    # ------------------------------------------------------------------ helpers for tests
    def online_endpoint(self, name: str, workspace: str) -> dict[str, Any] | None:
        return self.get(self.resource_id(workspace, "onlineEndpoints", name))

    def online_deployment(self, endpoint: str, name: str, workspace: str) -> dict[str, Any] | None:
        return self.get(
            self.resource_id(workspace, "onlineEndpoints", endpoint, "deployments", name)
        )

    def set_traffic(self, endpoint: str, traffic: dict[str, int], workspace: str) -> None:
        """Change an endpoint's traffic behind the client's back (drift)."""
        rid = self.resource_id(workspace, "onlineEndpoints", endpoint)
        with self.lock:
            body = self.resources.get(rid.lower())
            if body is None:
                raise KeyError(rid)
            body["properties"]["traffic"] = dict(traffic)

    def provisioning_state(self, resource_id: str) -> str | None:
        body = self.get(resource_id)
        if body is None:
            return None
        state: str | None = body.get("properties", {}).get("provisioningState")
        return state

    # ------------------------------------------------------------------ long-running operations
    def start_operation(
        self,
        resource_id: str,
        kind: str,
        action: str,
        duration: float,
        failure: ProvisioningFailure | None = None,
    ) -> Operation:
        op = Operation(
            id=str(uuid.uuid4()),
            resource_id=resource_id,
            kind=kind,
            action=action,
            started=self.clock.now(),
            duration=duration,
            failure=failure,
        )
        with self.lock:
            self.operations[op.id] = op
        return op

    def settle(self) -> None:
        """Finish every operation whose time has come (called on each request)."""
        now = self.clock.now()
        with self.lock:
            for op in self.operations.values():
                if op.done or now < op.started + op.duration:
                    continue
                op.end_time = utcnow()
                key = op.resource_id.lower()
                body = self.resources.get(key)
                if op.action == "create":
                    if op.failure is not None:
                        op.status = "Failed"
                        if body is not None:
                            body["properties"]["provisioningState"] = "Failed"
                        self.logs.setdefault(key, []).append(
                            f"ERROR {op.failure.code}: {op.failure.message}"
                        )
                    else:
                        op.status = "Succeeded"
                        if body is not None:
                            body["properties"]["provisioningState"] = "Succeeded"
                        self.logs.setdefault(key, []).append("INFO deployment succeeded")
                elif op.action == "delete":
                    self.delete(op.resource_id)
                    op.status = "Succeeded"
                elif op.action == "regenerateKeys":
                    key_type = str(op.detail.get("keyType", "Primary")).lower()
                    keys = self.keys.setdefault(
                        key, {"primaryKey": new_key(), "secondaryKey": new_key()}
                    )
                    field_name = "secondaryKey" if key_type == "secondary" else "primaryKey"
                    # azure-ai-ml sends the current key as keyValue: that still regenerates.
                    value = op.detail.get("keyValue")
                    if not value or value == keys.get(field_name):
                        value = new_key()
                    keys[field_name] = value
                    op.status = "Succeeded"

    def endpoint_keys(self, resource_id: str) -> dict[str, str]:
        with self.lock:
            return dict(
                self.keys.setdefault(
                    resource_id.lower(), {"primaryKey": new_key(), "secondaryKey": new_key()}
                )
            )
