"""The Backend protocol on Azure ML, through the official SDK (``azure.ai.ml.MLClient``).

One MLClient per workspace, made on first use and kept. Credentials are
``DefaultAzureCredential`` unless one is given (tests inject theirs).

Tags the backend keeps on what it makes, besides the specs' own (provenance):

* ``amlops-owner`` (``TAG_OWNER``) on every asset: the owner identity. An asset with another
  owner, or none, is never changed, adopted or deleted (``OwnershipError``, a BackendError).
  One owner (an operator) makes assets for many objects: a model version also names its object
  (``amlops-object``, namespace/name, from the spec's tags), and a registration for another
  object is refused too (the reconcile core checks it before deleting).
* ``amlops-digest`` on model versions: the sha256 of their files (``amlops.core.digest``), so
  registering the same files again is a no-op and changed files are seen.
* ``amlops-fingerprint`` on deployments: the reconciler's fingerprint of what was deployed.
* ``amlops-zero-traffic`` / ``amlops-zero-mirror`` on endpoints: the deployments asked for at
  0% (the SDK drops zeros from the request), so that a split read back compares equal to the
  split asked for and an unchanged endpoint is not written again.

Serverless endpoints carry ``amlops-owner`` like online endpoints. Marketplace subscriptions
carry no tags in Azure, so they cannot carry an owner: amlops creates a missing one and never
changes or deletes one.

Drift checks read lists shared by every object of a kind, kept for a short time-to-live, and
a 429 holds back every call to its workspace until its Retry-After (``snapshots``): reads made
right before a write, and the first read after the backend's own write, are targeted GETs.

Long-running operations never block: ``begin_*`` is started and the call returns the state it
leaves (Creating, Updating); the next reconcile observes the progress with a GET. While Azure
reports an operation in progress on an endpoint or deployment (Creating, Updating, Deleting),
nothing is written to it: Azure would refuse it (409), and the next reconcile comes soon.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from amlops.backends import base
from amlops.backends.azureml import schedules
from amlops.backends.azureml.calls import (
    OwnershipError,
    Scrubber,
    captured_console,
    quiet_sdk,
    translate,
    within,
)
from amlops.backends.azureml.pipelines import Pipelines
from amlops.backends.azureml.settings import AzureSettings, Locator
from amlops.backends.azureml.snapshots import Scope, Snapshots, WorkspaceGate, gate_policy
from amlops.core import files
from amlops.core.config import DefaultWorkspace
from amlops.core.digest import tree_digest
from amlops.core.files import PathRefusedError
from amlops.core.manifests import Manifest
from amlops.core.provenance import TAG_OBJECT

TAG_DIGEST = "amlops-digest"
TAG_FINGERPRINT = "amlops-fingerprint"
TAG_ZERO_TRAFFIC = "amlops-zero-traffic"
TAG_ZERO_MIRROR = "amlops-zero-mirror"
_BOOKKEEPING = (TAG_ZERO_TRAFFIC, TAG_ZERO_MIRROR)
DEPLOYMENT_HEADER = "azureml-model-deployment"
_INVOKE_TIMEOUT_S = 60.0
_MODEL_IN_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")
_IN_PROGRESS = (
    base.ProvisioningState.CREATING,
    base.ProvisioningState.UPDATING,
    base.ProvisioningState.DELETING,
)

T = TypeVar("T")


def default_credential() -> Any:
    """Workload identity in a cluster, ``az login`` on a laptop, environment variables in CI."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _state(value: str | None) -> base.ProvisioningState:
    try:
        return base.ProvisioningState(value or "Creating")
    except ValueError:  # Canceled, and whatever the service adds
        return base.ProvisioningState.FAILED


@dataclass(frozen=True)
class _Written:
    """A deployment as written in a manifest: where its relative paths resolve."""

    body: Mapping[str, Any]
    manifest: Manifest | None
    index: int


class AzureMLBackend:
    """Implements amlops.backends.base.Backend on Azure ML workspaces."""

    def __init__(
        self,
        settings: AzureSettings | None = None,
        *,
        owner: str = "",
        credential: Any = None,
        config: DefaultWorkspace | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        source_root: Path | None = None,
    ) -> None:
        self.settings = settings or AzureSettings.from_env()
        # files named by manifests must stay inside it: checked again right before an upload,
        # links deep in a folder included, as the local backend does; None: the caller vouches
        self.source_root = source_root
        # AMLOPS_AZURE_OWNER, when set, wins over the driver's default identity
        self.owner = self.settings.owner or owner
        if not self.owner:
            raise base.BackendError(
                "the azureml backend needs an owner identity (AMLOPS_AZURE_OWNER)"
            )
        if len(self.owner) > 256:  # Azure's limit for a tag value
            raise base.BackendError(
                f"AMLOPS_AZURE_OWNER: at most 256 characters, not {len(self.owner)}"
            )
        self.locator = Locator(self.settings, config)
        self._credential = credential
        self._client_kwargs = dict(client_kwargs or {})
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pollers: dict[tuple[str, ...], Any] = {}
        self._reasons: dict[tuple[str, ...], tuple[str, str]] = {}  # key -> (fingerprint, why)
        self._written: dict[tuple[str, str, str], _Written] = {}
        self._owned: set[tuple[str, ...]] = set()
        # model versions read in the last seconds: an endpoint reads the versions its Model
        # objects just read. Versions' files never change; our own writes drop the entry.
        self._versions: dict[tuple[str, str, str], tuple[float, base.ModelVersion]] = {}
        # drift checks read lists shared by every object of a kind (snapshots.py), and a 429
        # holds back every call to its workspace
        self.snapshots = Snapshots(self.settings.snapshot_ttl_s)
        self.gate = WorkspaceGate()
        self.scrub = Scrubber()
        self.pipelines = Pipelines(self)

    # -- what the manifests say ------------------------------------------------------------

    def learn(self, manifests: Sequence[Manifest]) -> None:
        """Workspaces' resource groups, and each deployment as written (until the reconcile
        core passes ``DeploymentSpec.written``): the driver calls it on every pass."""
        self.locator.learn(manifests)
        for m in manifests:
            if m.kind != "Endpoint":
                continue
            endpoint = m.spec.get("endpoint") or {}
            name = str(endpoint.get("name", m.name)) if isinstance(endpoint, Mapping) else m.name
            for i, dep in enumerate(m.spec.get("deployments") or []):
                if isinstance(dep, Mapping) and "name" in dep:
                    key = (m.workspace or "", name, str(dep["name"]))
                    self._written[key] = _Written(dep, m, i)

    # -- clients ---------------------------------------------------------------------------

    def client(self, workspace: str) -> Any:
        """The workspace's MLClient (made once)."""
        with self._lock:
            ml = self._clients.get(workspace)
            if ml is not None:
                return ml
            where = self.locator.coordinates(workspace)
            if self._credential is None:
                self._credential = default_credential()
            from azure.ai.ml import MLClient

            quiet_sdk()
            ml = MLClient(
                self._credential,
                where.subscription_id,
                where.resource_group,
                where.workspace_name,
                # True: with False a failed upload is swallowed and waited for forever; the
                # bars are captured (calls.captured_console)
                show_progress=True,
                enable_telemetry=False,
                per_retry_policies=[gate_policy(self.gate, workspace)],
                **self.settings.transport(),
                **self._client_kwargs,
            )
            self._clients[workspace] = ml
            return ml

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            raise translate(exc, what, self.scrub) from None

    def _admit(self, path: Path) -> None:
        """Raise PathRefusedError when ``path`` (or a link in it) leads out of the source root."""
        if self.source_root is not None:
            files.admit(self.source_root, path)

    def _upload(self, what: str, fn: Callable[[], T]) -> T:
        """A call that uploads files: quiet, and with its deadline."""
        try:
            with captured_console():
                return within(self.settings.upload_timeout_s, what, fn)
        except Exception as exc:
            raise translate(exc, what, self.scrub) from None

    def _get(self, what: str, fn: Callable[[], T]) -> T | None:
        """A GET; None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return fn()
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise translate(exc, what, self.scrub) from None

    def _seen(self, key: tuple[str, ...], tags: Mapping[str, str] | None) -> None:
        if (tags or {}).get(base.TAG_OWNER) == self.owner:
            self._owned.add(key)

    def _check_owner(
        self, what: str, tags: Mapping[str, str] | None, key: tuple[str, ...] = ()
    ) -> None:
        """Refuse to touch an asset that is not ours. One seen with our owner tag by this
        process stays ours when the tag goes (tags removed in the portal are drift: the next
        write puts them back)."""
        owner = (tags or {}).get(base.TAG_OWNER)
        if owner is None and key and key in self._owned:
            return
        if owner != self.owner:
            by = f"owner {owner!r}" if owner else "no amlops owner tag"
            raise OwnershipError(
                f"{what} exists in Azure ML and is not this amlops's ({by}; this is "
                f"{self.owner!r}): amlops does not adopt, change or delete it. Rename it in "
                f"the manifest, or tag it {base.TAG_OWNER}={self.owner} to hand it over"
            )

    # -- compute ---------------------------------------------------------------------------

    def get_compute(self, workspace: str, name: str) -> base.ComputeInfo | None:
        ml = self.client(workspace)
        # the clusters are Pulumi's, and few: one list per workspace and TTL serves every
        # pipeline's check (most name the same cluster); one made since shows within the TTL
        if self.snapshots.ttl_s > 0:
            snap, _listed = self.snapshots.get(
                (workspace, "computes", ""),
                lambda: self._call(
                    "computes", lambda: [(str(c.name), c) for c in ml.compute.list()]
                ),
            )
            found = snap.items.get(name)
        else:
            found = self._get(f"compute {name}", lambda: ml.compute.get(name))
        if found is None:
            return None
        return base.ComputeInfo(
            workspace,
            name,
            int(getattr(found, "max_instances", None) or 1),
            str(getattr(found, "size", "") or ""),
        )

    # -- models ----------------------------------------------------------------------------

    def _model(self, workspace: str, found: Any) -> base.ModelVersion:
        tags = {str(k): str(v) for k, v in (found.tags or {}).items()}
        created = getattr(found.creation_context, "created_at", None)
        return base.ModelVersion(
            workspace=workspace,
            name=str(found.name),
            version=str(found.version),
            asset_id=str(found.id or ""),
            digest=tags.get(TAG_DIGEST, ""),
            type=str(found.type or "custom_model"),
            description=str(found.description or ""),
            tags=tags,
            created_at=str(created or ""),
            location=str(found.path or ""),
        )

    def get_model_version(
        self, workspace: str, name: str, version: str
    ) -> base.ModelVersion | None:
        key = (workspace, name, version)
        cached = self._versions.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.settings.model_cache_s:
            return cached[1]
        ml = self.client(workspace)
        found = self.snapshots.lookup(
            (workspace, "model", name),
            version,
            lambda: self._call(
                f"versions of model {name}",
                lambda: [(str(m.version), m) for m in ml.models.list(name=name)],
            ),
            lambda _m: True,
        )
        if found is None:
            found = self._get(
                f"model {name}:{version}", lambda: ml.models.get(name, version=version)
            )
        if found is None:
            self._versions.pop(key, None)
            return None
        return self._remember(self._model(workspace, found))

    def _remember(self, model: base.ModelVersion) -> base.ModelVersion:
        key = (model.workspace, model.name, model.version)
        self._seen(("model", *key), model.tags)
        self._versions[key] = (time.monotonic(), model)
        return model

    def latest_model_version(self, workspace: str, name: str) -> base.ModelVersion | None:
        from azure.ai.ml.exceptions import ValidationException

        ml = self.client(workspace)

        def latest() -> Any:
            try:
                return ml.models.get(name, label="latest")
            except ValidationException as exc:  # how the SDK says "no version yet"
                if "does not exist" in str(exc):
                    return None
                raise

        found = self._get(f"model {name}@latest", latest)
        return self._remember(self._model(workspace, found)) if found is not None else None

    def get_registry_model(self, ref: base.ModelRef) -> base.ModelVersion | None:
        """A registry's model (the model catalog's) is served as it is: nothing to register and
        nothing read here (another tenant's registry may not be readable with our identity);
        Azure ML resolves it when the deployment is created, and a wrong one fails that
        deployment with Azure's reason in the condition."""
        if ref.version is None:
            raise base.BackendError(
                f"model {ref}: a deployment serves one version; name it "
                f"(azureml://registries/{ref.registry}/models/{ref.name}/versions/N)"
            )
        return base.ModelVersion(
            workspace="",
            name=ref.name,
            version=ref.version,
            asset_id=str(ref),
            digest="",
            type="",
            description="",
            tags={},
            created_at="",
            location=str(ref),
            registry=ref.registry,
        )

    def create_or_update_model_version(
        self, workspace: str, spec: base.ModelVersionSpec
    ) -> base.ModelVersion:
        try:
            self._admit(spec.path)
            digest = tree_digest(spec.path)
        except FileNotFoundError as exc:
            raise base.BackendError(f"model path {spec.path} does not exist") from exc
        except (OSError, PathRefusedError) as exc:
            raise base.BackendError(f"cannot read model files at {spec.path}: {exc}") from exc
        if spec.version is not None:
            existing = self.get_model_version(workspace, spec.name, spec.version)
        else:
            existing = self.latest_model_version(workspace, spec.name)
        label = f"model {existing.name}:{existing.version}" if existing else ""
        if existing is not None:
            self._check_owner(
                label, existing.tags, ("model", workspace, existing.name, existing.version)
            )
            # one owner holds many objects (an operator, every namespace's): a version made for
            # one of them is not another's to reuse or add to
            theirs, wanted = existing.tags.get(TAG_OBJECT, ""), spec.tags.get(TAG_OBJECT, "")
            if theirs != wanted:
                raise OwnershipError(
                    f"{label} exists in Azure ML for object {theirs or '(none)'}, not "
                    f"{wanted or '(none)'}: amlops does not adopt, change or delete it. Rename "
                    "it in the manifest"
                )
            if existing.digest == digest:
                return existing
            if spec.version is not None:
                raise base.BackendError(
                    f"{label} already exists in Azure ML with other files "
                    f"({_short(existing.digest) or 'no digest'}, now {_short(digest)}); Azure ML "
                    "never changes a version's files: give the new files a new version"
                )
        from azure.ai.ml.entities import Model

        model = Model(
            name=spec.name,
            version=spec.version,
            path=str(spec.path),
            type=spec.type,
            description=spec.description or None,
            tags={**spec.tags, TAG_DIGEST: digest, base.TAG_OWNER: self.owner},
        )
        ml = self.client(workspace)
        what = f"register model {spec.name}:{spec.version or 'next'}"
        created = self._upload(what, lambda: ml.models.create_or_update(model))
        self.snapshots.invalidate((workspace, "model", spec.name), str(created.version))
        return self._remember(self._model(workspace, created))

    def delete_model_version(self, workspace: str, name: str, version: str) -> None:
        """A REST DELETE of the version, through the SDK's own pipeline (credential, retries):
        ``ml.models.archive`` would only hide it, and a Model with ``deletionPolicy: Delete``
        asks for the version to go (``Retain`` keeps it)."""
        self._versions.pop((workspace, name, version), None)
        existing = self.get_model_version(workspace, name, version)
        if existing is None:
            return
        self._check_owner(
            f"model {name}:{version}", existing.tags, ("model", workspace, name, version)
        )
        self._versions.pop((workspace, name, version), None)
        self.snapshots.invalidate((workspace, "model", name), version)
        ml = self.client(workspace)
        rest = getattr(ml.models, "_model_versions_operation", None)
        if rest is None:  # a later SDK without it: hide the version, as the SDK can
            self._call(f"archive model {name}:{version}", lambda: ml.models.archive(name, version))
            return
        self._call(
            f"delete model {name}:{version}",
            lambda: rest.delete(
                resource_group_name=ml.resource_group_name,
                workspace_name=ml.workspace_name,
                name=name,
                version=version,
            ),
        )

    # -- pipeline runs: Azure ML jobs (pipelines.py) ----------------------------------------

    def latest_pipeline_run(self, workspace: str, pipeline: str) -> base.PipelineRun | None:
        return self.pipelines.latest(workspace, pipeline)

    def submit_pipeline_run(self, spec: base.PipelineRunSpec) -> base.PipelineRun:
        return self.pipelines.submit(spec)

    def cancel_pipeline_run(self, workspace: str, run_id: str) -> None:
        self.pipelines.cancel(workspace, run_id)

    # -- endpoints -------------------------------------------------------------------------

    def _endpoint(self, workspace: str, found: Any) -> base.EndpointState:
        tags = {str(k): str(v) for k, v in (found.tags or {}).items()}
        return base.EndpointState(
            workspace=workspace,
            name=str(found.name),
            scoring_uri=str(found.scoring_uri or ""),
            auth_mode=str(found.auth_mode or "key").lower(),
            provisioning_state=_state(found.provisioning_state),
            traffic=_split(found.traffic, tags.get(TAG_ZERO_TRAFFIC)),
            mirror_traffic=_split(found.mirror_traffic, tags.get(TAG_ZERO_MIRROR)),
            tags={k: v for k, v in tags.items() if k not in _BOOKKEEPING},
        )

    def _find_endpoint(
        self, workspace: str, name: str, kind: _EndpointKind, *, shared: bool
    ) -> Any | None:
        """The SDK's entity for an endpoint of ``kind``, from the workspace's list of them
        (``shared``: a drift check; one Azure is still changing is read again) or one GET;
        None: there is none."""
        ml = self.client(workspace)
        found = None
        if shared:
            operations = kind.operations(ml)
            found = self.snapshots.lookup(
                (workspace, kind.scope, ""),
                name,
                lambda: self._call(
                    kind.listing, lambda: [(str(e.name), e) for e in operations.list()]
                ),
                lambda e: kind.state(e.provisioning_state) not in _IN_PROGRESS,
            )
        if found is None:
            found = self._get(f"{kind.noun} {name}", lambda: kind.read(ml, name))
        return found

    def get_endpoint(self, workspace: str, name: str) -> base.EndpointState | None:
        return self._get_endpoint(workspace, name, shared=True)

    def _get_endpoint(
        self, workspace: str, name: str, *, shared: bool = False
    ) -> base.EndpointState | None:
        """The endpoint from the workspace's list (``shared``, a drift check) or one GET (before
        a write)."""
        found = self._find_endpoint(workspace, name, _ONLINE, shared=shared)
        if found is None:
            return None
        state = self._endpoint(workspace, found)
        key = ("endpoint", workspace, name)
        self._seen(key, state.tags)
        # an endpoint is its name: one of another owner is not observed as ours either
        self._check_owner(f"endpoint {name}", state.tags, key)
        return state

    def create_or_update_endpoint(self, spec: base.EndpointSpec) -> base.EndpointState:
        ml = self.client(spec.workspace)
        key = (spec.workspace, spec.name)
        current = self._get_endpoint(spec.workspace, spec.name)
        if current is not None:
            self._check_owner(
                f"endpoint {spec.name}", current.tags, ("endpoint", spec.workspace, spec.name)
            )
            if current.provisioning_state in _IN_PROGRESS:
                return current  # Azure is busy with it: observe it next time
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        tags = {**spec.tags, base.TAG_OWNER: self.owner}
        for tag, split in (
            (TAG_ZERO_TRAFFIC, spec.traffic),
            (TAG_ZERO_MIRROR, spec.mirror_traffic),
        ):
            zeros = sorted(n for n, v in split.items() if not v)
            if zeros:
                tags[tag] = ",".join(zeros)
        endpoint = ManagedOnlineEndpoint(
            name=spec.name,
            auth_mode=spec.auth_mode,
            description=spec.description or None,
            tags=tags,
            traffic={n: v for n, v in spec.traffic.items() if v},
            mirror_traffic={n: v for n, v in spec.mirror_traffic.items() if v},
        )
        self.snapshots.invalidate((spec.workspace, "endpoint", ""), spec.name)
        self._pollers[key] = self._call(
            f"apply endpoint {spec.name}",
            lambda: ml.online_endpoints.begin_create_or_update(endpoint),
        )
        self._owned.add(("endpoint", spec.workspace, spec.name))
        return base.EndpointState(
            workspace=spec.workspace,
            name=spec.name,
            scoring_uri=current.scoring_uri if current is not None else "",
            auth_mode=spec.auth_mode,
            provisioning_state=(
                base.ProvisioningState.UPDATING
                if current is not None
                else base.ProvisioningState.CREATING
            ),
            traffic=dict(spec.traffic),
            mirror_traffic=dict(spec.mirror_traffic),
            tags={k: v for k, v in tags.items() if k not in _BOOKKEEPING},
        )

    def delete_endpoint(self, workspace: str, name: str) -> None:
        current = self._get_endpoint(workspace, name)
        if current is None:
            return
        self._check_owner(f"endpoint {name}", current.tags, ("endpoint", workspace, name))
        if current.provisioning_state is base.ProvisioningState.DELETING:
            return
        ml = self.client(workspace)
        self.snapshots.invalidate((workspace, "endpoint", ""), name)
        self._pollers[(workspace, name)] = self._call(
            f"delete endpoint {name}", lambda: ml.online_endpoints.begin_delete(name)
        )

    def get_endpoint_keys(self, workspace: str, name: str) -> base.EndpointKeys:
        ml = self.client(workspace)
        found = self._call(f"keys of endpoint {name}", lambda: ml.online_endpoints.get_keys(name))
        primary = getattr(found, "primary_key", None) or getattr(found, "access_token", "") or ""
        secondary = getattr(found, "secondary_key", None) or ""
        self.scrub.remember(primary, secondary)
        return base.EndpointKeys(str(primary), str(secondary))

    def invoke(
        self, workspace: str, endpoint: str, body: bytes, deployment: str | None = None
    ) -> base.InvokeResult:
        """POST to Azure's scoring URI with the endpoint's primary key (or token): an online
        endpoint's, or else a serverless endpoint's of that name."""
        state: base.EndpointState | base.ServerlessEndpointState | None
        state = self.get_endpoint(workspace, endpoint)
        keys_of = self.get_endpoint_keys
        if state is None:
            state, keys_of = (
                self.get_serverless_endpoint(workspace, endpoint),
                (self.get_serverless_endpoint_keys),
            )
        if state is None:
            raise base.BackendError(f"endpoint {endpoint} does not exist in workspace {workspace}")
        if not state.scoring_uri:
            raise base.BackendError(f"endpoint {endpoint} has no scoring URI yet")
        keys = keys_of(workspace, endpoint)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {keys.primary}"}
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        request = urllib.request.Request(state.scoring_uri, body, headers, method="POST")
        context = ssl.create_default_context()
        try:
            with urllib.request.urlopen(request, timeout=_INVOKE_TIMEOUT_S, context=context) as r:
                return base.InvokeResult(r.status, r.read(), r.headers.get(DEPLOYMENT_HEADER) or "")
        except urllib.error.HTTPError as exc:
            return base.InvokeResult(
                exc.code, exc.read(), exc.headers.get(DEPLOYMENT_HEADER, "") if exc.headers else ""
            )
        except (OSError, ValueError) as exc:
            raise base.BackendError(self.scrub(f"endpoint {endpoint}: {exc}")) from None

    # -- deployments -----------------------------------------------------------------------

    def _deployment(self, workspace: str, endpoint: str, found: Any) -> base.DeploymentState:
        tags = {str(k): str(v) for k, v in (found.tags or {}).items()}
        model = str(found.model or "")
        match = _MODEL_IN_ID.search(model)
        state = _state(found.provisioning_state)
        fingerprint = tags.get(TAG_FINGERPRINT, "")
        self._seen(("deployment", workspace, endpoint, str(found.name)), tags)
        message = ""
        if state is base.ProvisioningState.FAILED:
            message = self._failure(workspace, endpoint, str(found.name), fingerprint)
        return base.DeploymentState(
            workspace=workspace,
            endpoint=endpoint,
            name=str(found.name),
            model=f"{match['name']}:{match['version']}" if match else model,
            provisioning_state=state,
            fingerprint=fingerprint,
            message=message,
            tags=tags,
        )

    def _failure(self, workspace: str, endpoint: str, name: str, fingerprint: str) -> str:
        """Why a deployment failed, as Azure says: the failed operation's error when this
        process started it, else the deployment's log. Looked up once per fingerprint."""
        key = (workspace, endpoint, name)
        known = self._reasons.get(key)
        if known is not None and known[0] == fingerprint:
            return known[1]
        reason = ""
        poller = self._pollers.get(key)
        if poller is not None and poller.done():
            try:
                poller.result(0)
            except Exception as exc:
                reason = str(translate(exc, "Azure ML", self.scrub))
        if not reason:
            ml = self.client(workspace)
            logs = self._get(
                f"logs of deployment {endpoint}/{name}",
                lambda: ml.online_deployments.get_logs(name, endpoint, lines=50),
            )
            lines = [ln.strip() for ln in str(logs or "").splitlines() if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower()] or lines
            reason = self.scrub(f"Azure ML: {errors[-1]}") if errors else "Azure ML: Failed"
        self._reasons[key] = (fingerprint, reason)
        return reason

    def list_deployments(self, workspace: str, endpoint: str) -> list[base.DeploymentState]:
        """An endpoint's deployments: its snapshot while fresh, unless the backend wrote one of
        them since or one is busy; else a list (which becomes the snapshot)."""
        ml = self.client(workspace)
        scope: Scope = (workspace, "deployment", endpoint)

        def listed() -> list[tuple[str, Any]]:
            found = self._get(
                f"deployments of endpoint {endpoint}",
                lambda: list(ml.online_deployments.list(endpoint)),
            )
            return [(str(d.name), d) for d in found or []]

        items: list[Any] | None = None
        if self.snapshots.wanted((workspace, "deployment", ""), endpoint):
            snap, fresh = self.snapshots.get(scope, listed)
            values = list(snap.items.values())
            if fresh or (  # listed just now, or still good
                not self.snapshots.written_since(scope, snap)
                and all(_state(d.provisioning_state) not in _IN_PROGRESS for d in values)
            ):
                items = values
        if items is None:
            pairs = listed()
            if self.snapshots.ttl_s > 0:
                self.snapshots.store(scope, pairs)
            items = [d for _, d in pairs]
        return [self._deployment(workspace, endpoint, d) for d in items]

    def _get_deployment(
        self, workspace: str, endpoint: str, name: str
    ) -> base.DeploymentState | None:
        ml = self.client(workspace)
        found = self._get(
            f"deployment {endpoint}/{name}", lambda: ml.online_deployments.get(name, endpoint)
        )
        return self._deployment(workspace, endpoint, found) if found is not None else None

    def create_or_update_deployment(self, spec: base.DeploymentSpec) -> base.DeploymentState:
        key = (spec.workspace, spec.endpoint, spec.name)
        endpoint = self._get_endpoint(spec.workspace, spec.endpoint)
        if endpoint is not None:  # else Azure refuses the PUT, naming the endpoint
            self._check_owner(
                f"endpoint {spec.endpoint}",
                endpoint.tags,
                ("endpoint", spec.workspace, spec.endpoint),
            )
        current = self._get_deployment(spec.workspace, spec.endpoint, spec.name)
        if current is not None:
            self._check_owner(
                f"deployment {spec.endpoint}/{spec.name}", current.tags, ("deployment", *key)
            )
            if current.provisioning_state in _IN_PROGRESS:
                return current
        try:
            if spec.code_dir is not None:
                self._admit(spec.code_dir)
        except (OSError, PathRefusedError) as exc:
            raise base.BackendError(f"deployment {spec.endpoint}/{spec.name}: code: {exc}") from exc
        deployment = self._build_deployment(spec)
        ml = self.client(spec.workspace)
        self.snapshots.invalidate((spec.workspace, "deployment", spec.endpoint), spec.name)
        self._pollers[key] = self._upload(
            f"deploy {spec.endpoint}/{spec.name}",
            lambda: ml.online_deployments.begin_create_or_update(deployment),
        )
        self._reasons.pop(key, None)
        self._owned.add(("deployment", *key))
        return base.DeploymentState(
            workspace=spec.workspace,
            endpoint=spec.endpoint,
            name=spec.name,
            model=str(spec.model),
            provisioning_state=(
                base.ProvisioningState.UPDATING
                if current is not None
                else base.ProvisioningState.CREATING
            ),
            fingerprint=spec.fingerprint,
            tags=dict(deployment.tags),
        )

    def _build_deployment(self, spec: base.DeploymentSpec) -> Any:
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

        # The driver's copy knows where the manifest's relative paths resolve; the spec's
        # (the operator's, from the object) is the deployment as written, paths and all.
        written = self._written.get((spec.workspace, spec.endpoint, spec.name))
        written = written or (_Written(spec.written, None, 0) if spec.written else None)
        body: Mapping[str, Any] = written.body if written is not None else {}
        where = f"deployment {spec.endpoint}/{spec.name}"
        instance_type = body.get("instance_type")
        if not isinstance(instance_type, str) or not instance_type:
            raise base.BackendError(
                f"{where}: Azure ML needs instance_type (a VM size such as Standard_DS3_v2)"
            )
        environment = body.get("environment")
        no_code = spec.code_dir is None  # an MLflow model, served by Azure's own server
        return ManagedOnlineDeployment(
            name=spec.name,
            endpoint_name=spec.endpoint,
            model=_model_id(spec.model),
            environment=(
                None
                if no_code and environment is None
                else self._environment(where, environment, written)
            ),
            code_configuration=(
                None
                if no_code
                else CodeConfiguration(code=str(spec.code_dir), scoring_script=spec.scoring_script)
            ),
            environment_variables=dict(spec.environment_variables) or None,
            instance_type=instance_type,
            instance_count=spec.instance_count,
            tags={
                **spec.tags,
                base.TAG_OWNER: self.owner,
                TAG_FINGERPRINT: spec.fingerprint,
            },
        )

    def _environment(self, where: str, value: Any, written: _Written | None) -> Any:
        if isinstance(value, str) and value:
            return value  # azureml:NAME:VERSION, a registry or curated environment
        if not isinstance(value, Mapping) or not isinstance(value.get("image"), str):
            raise base.BackendError(
                f"{where}: Azure ML needs an environment: azureml:NAME:VERSION, or "
                "{image: ..., conda_file: ...}"
            )
        from azure.ai.ml.entities import Environment

        conda: Path | None = None
        if isinstance(value.get("conda_file"), str):
            if written is None or written.manifest is None:
                raise base.BackendError(
                    f"{where}: environment.conda_file is a path this driver cannot resolve; "
                    "register the environment and name it (azureml:NAME:VERSION)"
                )
            field = ("spec", "deployments", written.index, "environment", "conda_file")
            try:
                conda = written.manifest.contained_path(field, value["conda_file"])
            except PathRefusedError as exc:
                raise base.BackendError(f"{where}: {exc}") from exc
        return Environment(image=value["image"], conda_file=str(conda) if conda else None)

    def delete_deployment(self, workspace: str, endpoint: str, name: str) -> None:
        current = self._get_deployment(workspace, endpoint, name)
        if current is None:
            return
        self._check_owner(
            f"deployment {endpoint}/{name}", current.tags, ("deployment", workspace, endpoint, name)
        )
        if current.provisioning_state is base.ProvisioningState.DELETING:
            return
        ml = self.client(workspace)
        self.snapshots.invalidate((workspace, "deployment", endpoint), name)
        self._pollers[(workspace, endpoint, name)] = self._call(
            f"delete deployment {endpoint}/{name}",
            lambda: ml.online_deployments.begin_delete(name, endpoint),
        )

    # -- serverless endpoints and Marketplace subscriptions ----------------------------------

    def get_marketplace_subscription(
        self, workspace: str, name: str
    ) -> base.MarketplaceSubscriptionState | None:
        ml = self.client(workspace)
        found = self._get(
            f"Marketplace subscription {name}", lambda: ml.marketplace_subscriptions.get(name)
        )
        if found is None:
            return None
        state = _snake_state(found.provisioning_state)
        status = str(found.status or "")
        message = ""
        if state is base.ProvisioningState.SUCCEEDED and status and status != "subscribed":
            # provisioned, but the offer is not usable (unsubscribed, suspended)
            state, message = (
                base.ProvisioningState.FAILED,
                f"Azure ML: the subscription is {status}",
            )
        elif state is base.ProvisioningState.FAILED:
            message = self._poller_failure(("subscription", workspace, name)) or "Azure ML: Failed"
        return base.MarketplaceSubscriptionState(
            workspace, name, str(found.model_id or ""), state, message
        )

    def create_or_update_marketplace_subscription(
        self, spec: base.MarketplaceSubscriptionSpec
    ) -> base.MarketplaceSubscriptionState:
        current = self.get_marketplace_subscription(spec.workspace, spec.name)
        if current is not None:
            return current  # never changed: it may serve endpoints amlops does not know of
        from azure.ai.ml.entities import MarketplaceSubscription

        ml = self.client(spec.workspace)
        subscription = MarketplaceSubscription(name=spec.name, model_id=spec.model_id)
        self._pollers[("subscription", spec.workspace, spec.name)] = self._call(
            f"subscribe to {spec.model_id}",
            lambda: ml.marketplace_subscriptions.begin_create_or_update(subscription),
        )
        return base.MarketplaceSubscriptionState(
            spec.workspace, spec.name, spec.model_id, base.ProvisioningState.CREATING
        )

    def get_serverless_endpoint(
        self, workspace: str, name: str
    ) -> base.ServerlessEndpointState | None:
        return self._get_serverless_endpoint(workspace, name, shared=True)

    def _get_serverless_endpoint(
        self, workspace: str, name: str, *, shared: bool = False
    ) -> base.ServerlessEndpointState | None:
        """From the workspace's list (``shared``, a drift check) or one GET (before a write)."""
        found = self._find_endpoint(workspace, name, _SERVERLESS, shared=shared)
        if found is None:
            return None
        tags = {str(k): str(v) for k, v in (found.tags or {}).items()}
        key = ("serverless", workspace, name)
        self._seen(key, tags)
        # an endpoint is its name: one of another owner is not observed as ours either
        self._check_owner(f"serverless endpoint {name}", tags, key)
        state = _snake_state(found.provisioning_state)
        message = ""
        if state is base.ProvisioningState.FAILED:
            message = self._poller_failure(key) or "Azure ML: Failed"
        return base.ServerlessEndpointState(
            workspace=workspace,
            name=name,
            model_id=str(found.model_id or ""),
            auth_mode=str(found.auth_mode or "key").lower(),
            provisioning_state=state,
            scoring_uri=str(found.scoring_uri or ""),
            message=message,
            tags=tags,
        )

    def create_or_update_serverless_endpoint(
        self, spec: base.ServerlessEndpointSpec
    ) -> base.ServerlessEndpointState:
        current = self._get_serverless_endpoint(spec.workspace, spec.name)
        if current is not None and current.provisioning_state in _IN_PROGRESS:
            return current  # Azure is busy with it: observe it next time
        from azure.ai.ml.entities import ServerlessEndpoint

        ml = self.client(spec.workspace)
        tags = {**spec.tags, base.TAG_OWNER: self.owner}
        # the SDK sends no auth mode: Azure ML's serverless endpoints take keys only
        endpoint = ServerlessEndpoint(name=spec.name, model_id=spec.model_id, tags=tags)
        key = ("serverless", spec.workspace, spec.name)
        self.snapshots.invalidate((spec.workspace, "serverless", ""), spec.name)
        self._pollers[key] = self._call(
            f"apply serverless endpoint {spec.name}",
            lambda: ml.serverless_endpoints.begin_create_or_update(endpoint),
        )
        self._owned.add(key)
        return base.ServerlessEndpointState(
            workspace=spec.workspace,
            name=spec.name,
            model_id=spec.model_id,
            auth_mode=spec.auth_mode,
            provisioning_state=(
                base.ProvisioningState.UPDATING
                if current is not None
                else base.ProvisioningState.CREATING
            ),
            scoring_uri=current.scoring_uri if current is not None else "",
            tags=tags,
        )

    def delete_serverless_endpoint(self, workspace: str, name: str) -> None:
        current = self._get_serverless_endpoint(workspace, name)
        if current is None or current.provisioning_state is base.ProvisioningState.DELETING:
            return
        ml = self.client(workspace)
        self.snapshots.invalidate((workspace, "serverless", ""), name)
        self._pollers[("serverless", workspace, name)] = self._call(
            f"delete serverless endpoint {name}",
            lambda: ml.serverless_endpoints.begin_delete(name),
        )

    def get_serverless_endpoint_keys(self, workspace: str, name: str) -> base.EndpointKeys:
        ml = self.client(workspace)
        found = self._call(
            f"keys of serverless endpoint {name}", lambda: ml.serverless_endpoints.get_keys(name)
        )
        primary = str(getattr(found, "primary_key", None) or "")
        secondary = str(getattr(found, "secondary_key", None) or "")
        self.scrub.remember(primary, secondary)
        return base.EndpointKeys(primary, secondary)

    def _poller_failure(self, key: tuple[str, ...]) -> str:
        """The error of a failed operation this process started, as Azure said it."""
        poller = self._pollers.get(key)
        if poller is None or not poller.done():
            return ""
        try:
            poller.result(0)
        except Exception as exc:
            return str(translate(exc, "Azure ML", self.scrub))
        return ""

    # -- pipeline schedules: Azure ML schedules (schedules.py) ------------------------------

    native_schedules = True

    def get_pipeline_schedule(
        self, workspace: str, pipeline: str
    ) -> base.PipelineScheduleState | None:
        return schedules.get(self, workspace, pipeline)

    def create_or_update_pipeline_schedule(
        self, spec: base.PipelineScheduleSpec
    ) -> base.PipelineScheduleState:
        return schedules.create_or_update(self, spec)

    def disable_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        schedules.disable(self, workspace, pipeline)

    def delete_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        schedules.delete(self, workspace, pipeline)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Forget the workspaces' clients (MLClient has nothing to close); operations already
        started go on in Azure and are observed by the next reconcile."""
        with self._lock:
            self._clients.clear()
            self._pollers.clear()
        self.snapshots.clear()


def _snake_state(value: str | None) -> base.ProvisioningState:
    """The SDK's serverless entities give states in snake case (``succeeded``)."""
    return _state("".join(part.capitalize() for part in (value or "").split("_")) or None)


def _read_endpoint(ml: Any, name: str) -> Any:
    """The endpoint as one GET. ``ml.online_endpoints.get`` also lists the deployments to fill
    in 0% entries, a second read per endpoint per reconcile; the backend keeps its own record
    of the 0% entries it asked for (``amlops-zero-traffic``), and the reconciler lists the
    deployments anyway."""
    operations = ml.online_endpoints
    rest = getattr(operations, "_online_operation", None)
    if rest is None:  # a later SDK without it: the public call, one read more
        return operations.get(name)
    from azure.ai.ml.entities import OnlineEndpoint

    found = rest.get(
        resource_group_name=ml.resource_group_name,
        workspace_name=ml.workspace_name,
        endpoint_name=name,
        **getattr(operations, "_init_kwargs", {}),
    )
    return OnlineEndpoint._from_rest_object(found)


@dataclass(frozen=True)
class _EndpointKind:
    """How the backend reads the endpoints of one kind: online or serverless."""

    scope: str  # of its snapshots (``snapshots.Scope``)
    noun: str  # in messages: "NOUN NAME"
    listing: str  # in messages about the list
    operations: Callable[[Any], Any]  # the MLClient's operations for the kind
    read: Callable[[Any, str], Any]  # one GET: (MLClient, name) -> the entity
    state: Callable[[str | None], base.ProvisioningState]


_ONLINE = _EndpointKind(
    scope="endpoint",
    noun="endpoint",
    listing="online endpoints",
    operations=lambda ml: ml.online_endpoints,
    read=_read_endpoint,
    state=_state,
)
_SERVERLESS = _EndpointKind(
    scope="serverless",
    noun="serverless endpoint",
    listing="serverless endpoints",
    operations=lambda ml: ml.serverless_endpoints,
    read=lambda ml, name: ml.serverless_endpoints.get(name),
    state=_snake_state,
)


def _split(azure: Mapping[str, int] | None, zeros: str | None) -> dict[str, int]:
    """A traffic split as read back, with the 0% entries the SDK left out of the request."""
    out = {name: 0 for name in (zeros or "").split(",") if name}
    out.update({str(k): int(v) for k, v in (azure or {}).items()})
    return out


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _model_id(ref: base.ModelRef) -> str:
    """How a deployment names its model: a registry's asset ID, or the workspace's
    ``azureml:NAME:VERSION``."""
    return str(ref) if ref.registry is not None else f"azureml:{ref.name}:{ref.version}"
