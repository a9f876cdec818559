"""What a reconciler asks a backend to do, and what one reconcile returns.

Actions are plain data, so the reconcile functions stay pure and tests can compare them;
``amlops.reconcile.driver`` carries them out against any ``Backend``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amlops.backends.base import DeploymentSpec, EndpointSpec, ModelVersionSpec, PipelineRunSpec
from amlops.reconcile.conditions import Outcome


@dataclass(frozen=True)
class RegisterModel:
    workspace: str
    spec: ModelVersionSpec

    def describe(self) -> str:
        return f"register model {self.spec.name}:{self.spec.version or 'next'}"


@dataclass(frozen=True)
class DeleteModelVersion:
    workspace: str
    name: str
    version: str

    def describe(self) -> str:
        return f"delete model {self.name}:{self.version}"


@dataclass(frozen=True)
class SubmitPipelineRun:
    spec: PipelineRunSpec

    def describe(self) -> str:
        return f"start a run of {self.spec.pipeline} ({self.spec.trigger})"


@dataclass(frozen=True)
class CancelPipelineRun:
    workspace: str
    run_id: str

    def describe(self) -> str:
        return f"cancel run {self.run_id}"


@dataclass(frozen=True)
class CreateOrUpdateEndpoint:
    spec: EndpointSpec

    def describe(self) -> str:
        split = ", ".join(f"{k} {v}%" for k, v in sorted(self.spec.traffic.items()))
        return f"apply endpoint {self.spec.name} ({split or 'no traffic'})"


@dataclass(frozen=True)
class DeleteEndpoint:
    workspace: str
    name: str

    def describe(self) -> str:
        return f"delete endpoint {self.name}"


@dataclass(frozen=True)
class CreateOrUpdateDeployment:
    spec: DeploymentSpec

    def describe(self) -> str:
        return f"deploy {self.spec.endpoint}/{self.spec.name} ({self.spec.model})"


@dataclass(frozen=True)
class DeleteDeployment:
    workspace: str
    endpoint: str
    name: str

    def describe(self) -> str:
        return f"delete deployment {self.endpoint}/{self.name}"


Action = (
    RegisterModel
    | DeleteModelVersion
    | SubmitPipelineRun
    | CancelPipelineRun
    | CreateOrUpdateEndpoint
    | DeleteEndpoint
    | CreateOrUpdateDeployment
    | DeleteDeployment
)


@dataclass(frozen=True)
class Result:
    """One reconcile: the actions to take now and the status to report.

    ``requeue_after`` (seconds) asks to be called again that soon even if nothing changes, while
    something the backend does is in progress; None means "on the next change or timer".
    """

    actions: tuple[Action, ...]
    status: dict[str, Any]
    outcome: Outcome
    requeue_after: float | None = None
