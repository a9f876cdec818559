"""Fault injection: error answers, delays, and provisioning that ends Failed."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One rule: requests whose operationId equals ``target`` (or whose path matches it as a
    regular expression, when it contains ``/``) get ``status`` (None: answered normally) after
    ``delay`` seconds, ``times`` times (None: always)."""

    target: str
    status: int | None
    retry_after: float | None = None
    times: int | None = 1
    delay: float = 0.0
    method: str | None = None
    code: str | None = None
    message: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str, operation_id: str | None) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if "/" in self.target:
            return re.search(self.target, path) is not None
        return operation_id == self.target

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def error_body(self) -> dict[str, Any]:
        code = self.code or {
            429: "TooManyRequests",
            500: "InternalServerError",
            503: "ServiceUnavailable",
        }.get(self.status or 0, "InjectedFault")
        return {"error": {"code": code, "message": self.message or f"injected fault ({code})"}}


@dataclass
class ProvisioningFailure:
    """A long-running create of ``kind`` (``onlineDeployments``, ``onlineEndpoints``,
    ``serverlessEndpoints``, ``marketplaceSubscriptions``) whose name matches ``name`` (a
    regular expression, full match) ends ``Failed`` with this code and message."""

    kind: str
    name: str
    code: str
    message: str
    times: int | None = None
    hits: int = 0


@dataclass
class Faults:
    """The active rules; thread-safe (the server runs in its own thread)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    rules: list[Fault] = field(default_factory=list)
    provisioning: list[ProvisioningFailure] = field(default_factory=list)

    def inject(
        self,
        target: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        method: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """Add a rule (see :class:`Fault`); ``status=None`` with ``delay`` makes a slow answer."""
        rule = Fault(target, status, retry_after, times, delay, method, code, message)
        with self._lock:
            self.rules.append(rule)
        return rule

    def fail_provisioning(
        self,
        name: str,
        *,
        kind: str = "onlineDeployments",
        code: str = "DeploymentFailed",
        message: str = "the deployment failed",
        times: int | None = None,
    ) -> ProvisioningFailure:
        failure = ProvisioningFailure(kind, name, code, message, times)
        with self._lock:
            self.provisioning.append(failure)
        return failure

    def take(self, method: str, path: str, operation_id: str | None) -> Fault | None:
        """The first live rule for this request, counted as hit."""
        with self._lock:
            for rule in self.rules:
                if not rule.exhausted and rule.matches(method, path, operation_id):
                    rule.hits += 1
                    return rule
        return None

    def take_provisioning(self, kind: str, name: str) -> ProvisioningFailure | None:
        with self._lock:
            for failure in self.provisioning:
                if failure.kind != kind or re.fullmatch(failure.name, name) is None:
                    continue
                if failure.times is not None and failure.hits >= failure.times:
                    continue
                failure.hits += 1
                return failure
        return None

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.provisioning.clear()
