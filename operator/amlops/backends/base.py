"""The Backend protocol: what the reconcilers need from a place that holds and runs ML assets.

The reconcile core decides; a backend only executes and reports. Everything is shaped after
Azure ML (model name + version + asset id, job runs with per-step status, online endpoints
with a scoring URI, deployments with a provisioning state, a traffic split), so the ``azureml``
backend can implement the same protocol with the ``azure-ai-ml`` SDK.

Calls that start long work (a pipeline run, a deployment) return at once with the new state;
callers observe progress with the ``get``/``list`` calls, as with Azure's long-running operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

# The core's class, not a copy: the kinds parse model references into it without importing a
# backend, and every backend takes it.
from amlops.core.assets import ModelRef as ModelRef


class BackendError(Exception):
    """A request the backend refused or could not carry out; the message is for users."""


class BackendUnsupported(BackendError):
    """What this backend cannot do at all, however the request is written (the local backend
    and a model-catalog component, say): the object is fine, another backend runs it. Drivers
    report it apart from failures (reason ``UnsupportedByBackend``)."""


# Who made an asset: a backend that shares its assets with others (Azure ML) tags what it makes
# with its owner identity and never adopts, changes or deletes an asset carrying another (or
# none). Next to the provenance tags (amlops.core.provenance), in the same ``amlops-`` form.
TAG_OWNER = "amlops-owner"


class ProvisioningState(StrEnum):
    """Azure ML's provisioning states, plus ``Stopped`` for the local backend: the object is in
    the catalog but nothing serves it (after ``amlops up --once`` or a crash); reconcile
    re-creates it."""

    CREATING = "Creating"
    UPDATING = "Updating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"
    STOPPED = "Stopped"


class JobStatus(StrEnum):
    """Azure ML job statuses (the subset a local runner can be in)."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


# -- models -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersionSpec:
    """A model version to register from local files (``path``, a file or a folder)."""

    name: str
    version: str | None  # None: the next version, unless the latest already has these files
    path: Path
    type: str = "custom_model"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    workspace: str
    name: str
    version: str
    asset_id: str
    digest: str  # sha256 of the registered files (see amlops.core.digest)
    type: str
    description: str
    tags: Mapping[str, str]
    created_at: str
    # Where the files are, as a scoring server or a pipeline step would see them: a local
    # folder for the local backend, a datastore URI for Azure ML.
    location: str
    registry: str | None = None  # a registry's model (``get_registry_model``)

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version, self.registry)


# -- compute ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComputeInfo:
    workspace: str
    name: str
    max_instances: int
    vm_size: str = ""


# -- pipeline runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRunSpec:
    """One submission of an Azure ML pipeline job.

    ``job`` is the CLI v2 pipeline job with local paths already resolved to absolute ones;
    ``fingerprint`` identifies the spec (and the files it points at) the run was made from.
    """

    workspace: str
    pipeline: str
    job: Mapping[str, Any]
    fingerprint: str
    trigger: str  # change | schedule | manual | retry
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRun:
    name: str
    status: JobStatus
    compute: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    log: str = ""  # where the step's output is (a file for the local backend)
    message: str = ""


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    workspace: str
    pipeline: str
    fingerprint: str
    trigger: str
    status: JobStatus
    steps: tuple[StepRun, ...]  # in topological order
    created_at: str
    ended_at: str | None = None
    message: str = ""
    # registered model outputs: output name -> "name:version"
    outputs: Mapping[str, str] = field(default_factory=dict)
    # True when the run did not fail on its own: its runner went away (a crash, kill -9).
    interrupted: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def submitted(
        cls,
        spec: PipelineRunSpec,
        run_id: str,
        status: JobStatus,
        steps: tuple[StepRun, ...],
        created_at: str,
        tags: Mapping[str, str],
    ) -> PipelineRun:
        """The run a backend has just started for ``spec``."""
        return cls(
            run_id,
            spec.workspace,
            spec.pipeline,
            spec.fingerprint,
            spec.trigger,
            status,
            steps,
            created_at,
            tags=tags,
        )


# -- pipeline schedules -----------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineScheduleSpec:
    """A pipeline's ``spec.schedule`` kept by a backend that schedules natively (Azure ML
    schedules): ``cron`` read in ``time_zone`` (IANA), and the job each firing submits, the
    same job, fingerprint and tags as a change-triggered run (trigger ``schedule``)."""

    workspace: str
    pipeline: str
    cron: str
    time_zone: str
    enabled: bool
    job: Mapping[str, Any]  # as PipelineRunSpec.job: local paths resolved to absolute ones
    fingerprint: str
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineScheduleState:
    workspace: str
    pipeline: str
    cron: str
    time_zone: str
    enabled: bool
    fingerprint: str  # of the job the schedule submits ("" when it does not say)
    provisioning_state: ProvisioningState
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def accepted(
        cls,
        spec: PipelineScheduleSpec,
        provisioning_state: ProvisioningState,
        tags: Mapping[str, str],
    ) -> PipelineScheduleState:
        """The schedule a backend has just been asked to keep as ``spec`` says."""
        return cls(
            spec.workspace,
            spec.pipeline,
            spec.cron,
            spec.time_zone,
            spec.enabled,
            spec.fingerprint,
            provisioning_state,
            tags,
        )


# -- endpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSpec:
    workspace: str
    name: str
    auth_mode: str  # key | aml_token | aad_token
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int] = field(default_factory=dict)
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointState:
    workspace: str
    name: str
    scoring_uri: str
    auth_mode: str
    provisioning_state: ProvisioningState
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int]
    message: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentSpec:
    """An online deployment. ``fingerprint`` covers the spec and the files it points at (code,
    model), so a changed scoring script or model is a changed deployment."""

    workspace: str
    endpoint: str
    name: str
    model: ModelRef
    code_dir: Path | None  # None: Azure ML's no-code deployment of an MLflow model
    scoring_script: str
    fingerprint: str
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    instance_count: int = 1
    tags: Mapping[str, str] = field(default_factory=dict)
    # The CLI v2 deployment YAML as written, for a backend that deploys more than the fields
    # above (Azure ML: instance_type, environment); empty when the driver does not pass it.
    written: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentState:
    workspace: str
    endpoint: str
    name: str
    model: str  # "name:version"
    provisioning_state: ProvisioningState
    fingerprint: str
    message: str = ""
    log: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointKeys:
    primary: str
    secondary: str

    def __repr__(self) -> str:  # never let a key reach a log through a repr
        return "EndpointKeys(primary=***, secondary=***)"


@dataclass(frozen=True)
class InvokeResult:
    status: int
    body: bytes
    deployment: str  # the deployment that answered (Azure's azureml-model-deployment header)


# -- serverless endpoints (model-catalog models as a service) --------------------------------


@dataclass(frozen=True)
class MarketplaceSubscriptionSpec:
    """The workspace's subscription to a non-Microsoft model's Marketplace offer, which Azure ML
    requires before a serverless endpoint serves the model."""

    workspace: str
    name: str
    model: ModelRef  # a registry model; the subscription is to the model, any version
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"azureml://registries/{self.model.registry}/models/{self.model.name}"


@dataclass(frozen=True)
class MarketplaceSubscriptionState:
    workspace: str
    name: str
    model_id: str
    provisioning_state: ProvisioningState
    message: str = ""


@dataclass(frozen=True)
class ServerlessEndpointSpec:
    workspace: str
    name: str
    model: ModelRef  # a registry model (``registry`` set); version None: the latest
    model_id: str  # as the manifest wrote it, which is what the backend is given
    auth_mode: str = "key"
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerlessEndpointState:
    workspace: str
    name: str
    model_id: str
    auth_mode: str
    provisioning_state: ProvisioningState
    scoring_uri: str = ""
    message: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


# -- the protocol -----------------------------------------------------------------------------


class Backend(Protocol):
    """What a reconciler may ask of a backend. Every call is idempotent."""

    # compute is provisioned by Pulumi; reconcilers only look it up
    def get_compute(self, workspace: str, name: str) -> ComputeInfo | None: ...

    def get_model_version(self, workspace: str, name: str, version: str) -> ModelVersion | None: ...

    def latest_model_version(self, workspace: str, name: str) -> ModelVersion | None: ...

    def create_or_update_model_version(
        self, workspace: str, spec: ModelVersionSpec
    ) -> ModelVersion: ...

    def delete_model_version(self, workspace: str, name: str, version: str) -> None: ...

    # a model in an Azure ML registry (the model catalog's), served as it is, never registered
    def get_registry_model(self, ref: ModelRef) -> ModelVersion | None: ...

    def latest_pipeline_run(self, workspace: str, pipeline: str) -> PipelineRun | None: ...

    def submit_pipeline_run(self, spec: PipelineRunSpec) -> PipelineRun: ...

    def cancel_pipeline_run(self, workspace: str, run_id: str) -> None: ...

    # A pipeline's schedule. True: the backend fires it itself (Azure ML schedules) and the
    # reconciler keeps one there with the calls below; False: the reconciler's own timer submits
    # the runs (trigger ``schedule``) and never calls them (a backend may refuse them).
    @property
    def native_schedules(self) -> bool: ...

    def get_pipeline_schedule(
        self, workspace: str, pipeline: str
    ) -> PipelineScheduleState | None: ...

    def create_or_update_pipeline_schedule(
        self, spec: PipelineScheduleSpec
    ) -> PipelineScheduleState: ...

    def disable_pipeline_schedule(self, workspace: str, pipeline: str) -> None: ...

    def delete_pipeline_schedule(self, workspace: str, pipeline: str) -> None: ...

    def get_endpoint(self, workspace: str, name: str) -> EndpointState | None: ...

    def create_or_update_endpoint(self, spec: EndpointSpec) -> EndpointState: ...

    def delete_endpoint(self, workspace: str, name: str) -> None: ...

    def list_deployments(self, workspace: str, endpoint: str) -> list[DeploymentState]: ...

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState: ...

    def delete_deployment(self, workspace: str, endpoint: str, name: str) -> None: ...

    def get_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys: ...

    def invoke(
        self, workspace: str, endpoint: str, body: bytes, deployment: str | None = None
    ) -> InvokeResult: ...

    def get_marketplace_subscription(
        self, workspace: str, name: str
    ) -> MarketplaceSubscriptionState | None: ...

    def create_or_update_marketplace_subscription(
        self, spec: MarketplaceSubscriptionSpec
    ) -> MarketplaceSubscriptionState: ...

    def get_serverless_endpoint(
        self, workspace: str, name: str
    ) -> ServerlessEndpointState | None: ...

    def create_or_update_serverless_endpoint(
        self, spec: ServerlessEndpointSpec
    ) -> ServerlessEndpointState: ...

    def delete_serverless_endpoint(self, workspace: str, name: str) -> None: ...

    def get_serverless_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys: ...
