"""The local backend: an Azure ML workspace's worth of state in one directory (default .amlops/).

```
.amlops/
  catalog.sqlite         the asset catalog (models, computes, runs + steps, endpoints,
                         deployments) and the object store (object records, run requests)
  artifacts/             content-addressed files (objects/) and trees (trees/)
  models/<ws>/<name>/<version>/<digest>/   a version's folder (AZUREML_MODEL_DIR)
  runs/<run id>/<step>/  code snapshot, outputs/, user_logs/std_log.txt, pid
  runs/<run id>/inputs/<name>/  read-only copies of the run's inputs (a step's own: <step>/inputs/)
  deployments/<ws>/<endpoint>/<deployment>/  code snapshot, server.log, server.pid,
                         server.sock (the scoring server's socket, 0600)
  registries/<registry>/models/<name>/<version>/   local registries (``amlops registry
                         share``): the catalog models serverless endpoints serve offline
  keys/<ws>/<endpoint>.json   endpoint keys (also the token of aml_token/aad_token), mode 0600
  up.lock                held by the process that runs things (``amlops up``, ``amlops run``)
  .gitignore             ``*``: the folder usually sits in the repository; keys must not be
                         committed
```

The folder is created 0700 (it holds keys); an existing one that holds only this layout and
that others may read is tightened (a folder holding other files is the user's: only a note).
Open it with ``LocalBackend(path, read_only=True)`` to read (``amlops status``, ``amlops
invoke``): nothing is created or written, and a folder nobody may write to works.
``LocalBackend(path)`` creates it; call ``start()`` to run things: that takes the lock, adopts
or stops what a crashed process left behind, and makes ``close()`` stop everything this
process started. What is wrong with the folder or its catalog raises ``StateError``, whose
message names the file and says what to do.

Every endpoint asks for a bearer token unless its ``auth_mode`` is ``none``. Auth mode ``key``
takes either key, as in Azure. ``aml_token`` and ``aad_token`` are emulated: there is no token
service here, so the endpoint's primary or secondary key stands in for the token, as a static
token that never expires (``amlops invoke`` sends it). A manifest that asks for auth is never
served openly.

A serverless endpoint is served as an online endpoint of its own name with one deployment,
``default``, running the model's own ``score.py`` (``amlops.backends.local.registries``) with
``AZUREML_MODEL_DIR`` at the model's folder in the local registry; its record (model id, auth
mode) is in the catalog's ``meta`` table. A Marketplace subscription is recorded and succeeds:
there is nothing to buy offline.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO

from amlops.backends.base import (
    TAG_OWNER,
    BackendError,
    ComputeInfo,
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    InvokeResult,
    MarketplaceSubscriptionSpec,
    MarketplaceSubscriptionState,
    ModelRef,
    ModelVersion,
    ModelVersionSpec,
    PipelineRun,
    PipelineRunSpec,
    PipelineScheduleSpec,
    PipelineScheduleState,
    ProvisioningState,
    ServerlessEndpointSpec,
    ServerlessEndpointState,
)
from amlops.backends.local.cas import ArtifactStore, make_folders
from amlops.backends.local.catalog import AssetCatalog
from amlops.backends.local.db import Database, StateError
from amlops.backends.local.models import ModelRegistry
from amlops.backends.local.objects import ObjectStore
from amlops.backends.local.registries import LocalRegistries, not_offline, scoring_script
from amlops.backends.local.router import DEPLOYMENT_HEADER, Router
from amlops.backends.local.runner import PipelineRunner, job_graph_or_error
from amlops.backends.local.scoring import ScoringServers
from amlops.core.manifests import Manifest

DEFAULT_STATE_DIR = ".amlops"
CATALOG_FILE = "catalog.sqlite"
_STATE_DIR_MODE = 0o700
_GITIGNORE = "# the local state of `amlops up`: endpoint keys, catalog, runs; never commit it\n*\n"
_INVOKE_TIMEOUT_S = 60.0
_OPEN_AUTH_MODE = "none"
# A serverless endpoint's one deployment (an online endpoint's deployments are named by users)
SERVERLESS_DEPLOYMENT = "default"


class StateDirLockedError(BackendError):
    """Another process runs things from this state directory."""


class LocalBackend:
    """Implements amlops.backends.base.Backend on this machine."""

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        read_only: bool = False,
        source_root: Path | None = None,
        owner: str = "",
    ) -> None:
        self.root = Path(state_dir).resolve()
        # the driver's identity (``amlops-owner``) on the model versions it registers; a version
        # of another owner is refused (``models.check_owner``). "": a tool or test opening the
        # folder, which checks no owner
        self.owner = owner
        self.read_only = read_only
        # files named by manifests must stay inside it (checked again when they are read, after
        # the reconcile core's check); None: the caller vouches for the paths (tests, bench)
        self.source_root = source_root
        # what the user should know about the folder (it was tightened, say); the CLI shows it
        self.notes: list[str] = []
        self._lock_file: IO[str] | None = None
        self._routers: dict[tuple[str, str], Router] = {}
        self._open()

    def _open(self) -> None:
        if self.read_only:
            if not self.root.is_dir():
                raise StateError(_not_a_folder(self.root))
        else:
            self.notes.extend(prepare_state_dir(self.root))
        self.db = Database(self.root / CATALOG_FILE, read_only=self.read_only)
        self.catalog = AssetCatalog(self.db)
        self.objects = ObjectStore(self.db)
        self._catalog_inode = (self.root / CATALOG_FILE).stat().st_ino
        self.store = ArtifactStore(self.root / "artifacts")
        self.models = ModelRegistry(self.catalog, self.store, self.root)
        self.registries = LocalRegistries(self.root)
        self.runner = PipelineRunner(
            self.catalog, self.models, self.root, self._capacity, source_root=self.source_root
        )
        self.scoring = ScoringServers(
            self.catalog, self.store, self.root, self._deployment_model, self.source_root
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Take the state directory for this process and clean up after a crashed one."""
        if self.read_only:
            raise StateError(f"{self.root} was opened read-only; open it writable to run things")
        self._lock_file = _lock(self.root / "up.lock")
        self.runner.recover()
        self.scoring.adopt_or_replace()

    def close(self, message: str = "stopped by amlops") -> None:
        """Stop what this process started; the catalog keeps the state for the next start.
        Stops every process even when the catalog can no longer record it."""
        if self._lock_file is not None:
            self.runner.stop(f"interrupted: {message}")
            try:
                self.scoring.stop_all(message)
            except StateError:
                self.scoring.stop_all("")  # without a message nothing is written
            for router in self._routers.values():
                router.stop()
            self._routers.clear()
            self._lock_file.close()
            self._lock_file = None
        self.db.close()

    def check_state(self) -> None:
        """Raise StateError when the catalog is damaged (after an unexplained failure: a
        damaged file does not heal, so retrying would only repeat the failure)."""
        self.db.check()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state_dir_intact(self) -> bool:
        path = self.root / CATALOG_FILE
        try:
            return path.stat().st_ino == self._catalog_inode
        except OSError:
            return False

    def reset_after_loss(self) -> None:
        """The state directory was deleted under us: stop everything (the processes' pid files
        are gone with it) and start over with an empty one."""
        self.runner.stop("interrupted: the state directory was deleted")
        self.scoring.stop_all("")
        for router in self._routers.values():
            router.stop()
        self._routers.clear()
        self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._open()
        self.start()

    # -- compute ---------------------------------------------------------------------------

    def put_compute(self, info: ComputeInfo) -> None:
        """Stand in for Pulumi: the local backend's compute is whatever the manifests declare."""
        self.catalog.put_compute(info)

    def seed_computes(self, manifests: Iterable[Manifest]) -> None:
        """``put_compute`` for each ComputeCluster of ``manifests``: the one place a manifest
        becomes local compute, whichever driver (``amlops up``, the operator pod) read it."""
        for m in manifests:
            if m.kind == "ComputeCluster" and m.workspace:
                self.put_compute(
                    ComputeInfo(
                        m.workspace,
                        m.name,
                        int(m.spec.get("maxInstances", 1)),
                        str(m.spec.get("vmSize", "")),
                    )
                )

    def get_compute(self, workspace: str, name: str) -> ComputeInfo | None:
        return self.catalog.get_compute(workspace, name)

    def _capacity(self, workspace: str, compute: str) -> int:
        info = self.catalog.get_compute(workspace, compute)
        return info.max_instances if info is not None else 1

    # -- models ----------------------------------------------------------------------------

    def get_model_version(self, workspace: str, name: str, version: str) -> ModelVersion | None:
        return self.models.get(workspace, name, version)

    def latest_model_version(self, workspace: str, name: str) -> ModelVersion | None:
        return self.models.latest(workspace, name)

    def get_registry_model(self, ref: ModelRef) -> ModelVersion | None:
        """A model shared into a local registry; one that is not cannot be had offline."""
        found = self.registries.get(ref)
        if found is None:
            raise not_offline(ref)
        return found

    def share_model(self, workspace: str, name: str, version: str, registry: str) -> ModelVersion:
        """``amlops registry share``: a registered version into a local registry."""
        model = self.models.get(workspace, name, version)
        if model is None:
            raise BackendError(f"model {name}:{version} is not registered in workspace {workspace}")
        return self.registries.share(model, registry)

    def list_model_versions(self, workspace: str, name: str) -> list[ModelVersion]:
        return self.catalog.list_model_versions(workspace, name, self.root)

    def create_or_update_model_version(
        self, workspace: str, spec: ModelVersionSpec
    ) -> ModelVersion:
        if self.owner:
            spec = replace(spec, tags={**spec.tags, TAG_OWNER: self.owner})
        return self.models.register(workspace, spec, source_root=self.source_root, owner=self.owner)

    def delete_model_version(self, workspace: str, name: str, version: str) -> None:
        self.models.delete(workspace, name, version, owner=self.owner)

    # -- pipeline runs ---------------------------------------------------------------------

    def latest_pipeline_run(self, workspace: str, pipeline: str) -> PipelineRun | None:
        return self.catalog.latest_run(workspace, pipeline)

    def submit_pipeline_run(self, spec: PipelineRunSpec) -> PipelineRun:
        self._require_started()
        return self.runner.submit(spec, job_graph_or_error(spec.job))

    def cancel_pipeline_run(self, workspace: str, run_id: str) -> None:
        self.runner.cancel(run_id, "canceled")

    def wait_for_run(self, run_id: str, timeout: float | None = None) -> PipelineRun | None:
        return self.runner.wait(run_id, timeout)

    # -- pipeline schedules ----------------------------------------------------------------
    # Nothing here fires on its own: the reconciler's timer is the schedule (it submits the
    # runs with trigger ``schedule`` and keeps the next time in status). So the backend holds
    # no schedules: reading finds none, disabling or deleting has nothing to do, and a write
    # is refused.

    native_schedules = False

    def get_pipeline_schedule(self, workspace: str, pipeline: str) -> PipelineScheduleState | None:
        return None

    def create_or_update_pipeline_schedule(
        self, spec: PipelineScheduleSpec
    ) -> PipelineScheduleState:
        raise BackendError(
            f"pipeline {spec.pipeline}: the local backend keeps no schedules; the reconciler "
            "submits scheduled runs itself"
        )

    def disable_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        return None

    def delete_pipeline_schedule(self, workspace: str, pipeline: str) -> None:
        return None

    # -- endpoints -------------------------------------------------------------------------

    def _keys_file(self, workspace: str, name: str) -> Path:
        return self.root / "keys" / workspace / f"{name}.json"

    def _ensure_keys(self, workspace: str, name: str) -> EndpointKeys:
        if not self._keys_file(workspace, name).exists():
            self._write_keys(
                workspace,
                name,
                EndpointKeys(secrets.token_urlsafe(32), secrets.token_urlsafe(32)),
            )
        return self.get_endpoint_keys(workspace, name)

    def _write_keys(self, workspace: str, name: str, keys: EndpointKeys) -> None:
        path = self._keys_file(workspace, name)
        make_folders(path.parent)
        data = {"primaryKey": keys.primary, "secondaryKey": keys.secondary}
        # created 0600 from the first byte, under a temporary name: the key is never readable
        # by others, and a reader never sees half a file
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def _restore_keys(self, workspace: str, name: str) -> None:
        """The keys file was deleted while the router serves with its keys: write those back,
        so that `amlops invoke` (and whoever reads the file) keeps working with the same keys.
        The router's keys are the endpoint's truth, as the keys held by Azure are."""
        router = self._routers.get((workspace, name))
        if self._lock_file is None or router is None or router.keys is None:
            return
        if not self._keys_file(workspace, name).exists():
            self._write_keys(workspace, name, router.keys)

    def get_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys:
        path = self._keys_file(workspace, name)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(f"no keys for endpoint {name} ({path}): {exc}") from exc
        return EndpointKeys(data["primaryKey"], data["secondaryKey"])

    def get_endpoint(self, workspace: str, name: str) -> EndpointState | None:
        row = self.catalog.get_endpoint_row(workspace, name)
        if row is None:
            return None
        self._restore_keys(workspace, name)
        router = self._routers.get((workspace, name))
        serving = router is not None and router.running
        return EndpointState(
            workspace=workspace,
            name=name,
            scoring_uri=f"http://127.0.0.1:{row['port']}/score",
            auth_mode=row["auth_mode"],
            provisioning_state=(
                ProvisioningState.SUCCEEDED if serving else ProvisioningState.STOPPED
            ),
            traffic=row["traffic"],
            mirror_traffic=row["mirror_traffic"],
            message=row["message"],
            tags=row["tags"],
        )

    def create_or_update_endpoint(self, spec: EndpointSpec) -> EndpointState:
        self._require_started()
        key = (spec.workspace, spec.name)
        row = self.catalog.get_endpoint_row(spec.workspace, spec.name)
        keys = self._ensure_keys(spec.workspace, spec.name)
        port = int(row["port"]) if row else 0
        message = row["message"] if row else ""
        auth = None if spec.auth_mode == _OPEN_AUTH_MODE else keys
        router = self._routers.get(key)
        if router is not None and router.running and router.keys != auth:
            router.stop()  # the auth mode changed: serve with the new one, on the same port
        if router is None or not router.running or router.keys != auth:
            router = Router(spec.name, port, auth)
            try:
                router.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise BackendError(f"endpoint {spec.name}: cannot listen: {exc}") from exc
                router = Router(spec.name, 0, auth)
                router.start()
                message = f"port {port} was taken; the endpoint moved to port {router.port}"
            self._routers[key] = router
        self.catalog.put_endpoint_row(
            {
                "workspace": spec.workspace,
                "name": spec.name,
                "auth_mode": spec.auth_mode,
                "port": router.port,
                "traffic": dict(spec.traffic),
                "mirror_traffic": dict(spec.mirror_traffic),
                "description": spec.description,
                "message": message,
                "tags": dict(spec.tags),
            }
        )
        self._route(spec.workspace, spec.name)
        state = self.get_endpoint(spec.workspace, spec.name)
        assert state is not None
        return state

    def _route(self, workspace: str, name: str) -> None:
        router = self._routers.get((workspace, name))
        row = self.catalog.get_endpoint_row(workspace, name)
        if router is None or row is None:
            return
        router.update(self.scoring.targets(workspace, name), row["traffic"], row["mirror_traffic"])

    def delete_endpoint(self, workspace: str, name: str) -> None:
        for row in self.catalog.list_deployment_rows(workspace, name):
            self.scoring.delete((workspace, name, row["name"]))
        router = self._routers.pop((workspace, name), None)
        if router is not None:
            router.stop()
        self.catalog.delete_endpoint_row(workspace, name)
        with contextlib.suppress(FileNotFoundError):
            self._keys_file(workspace, name).unlink()
        shutil.rmtree(self.root / "deployments" / workspace / name, ignore_errors=True)

    def list_deployments(self, workspace: str, endpoint: str) -> list[DeploymentState]:
        states = self.scoring.refresh_endpoint(workspace, endpoint)
        self._route(workspace, endpoint)
        return states

    def create_or_update_deployment(self, spec: DeploymentSpec) -> DeploymentState:
        self._require_started()
        state = self.scoring.create_or_update(spec)
        self._route(spec.workspace, spec.endpoint)
        return state

    def delete_deployment(self, workspace: str, endpoint: str, name: str) -> None:
        self.scoring.delete((workspace, endpoint, name))
        self._route(workspace, endpoint)

    def _deployment_model(self, workspace: str, spec: DeploymentSpec) -> ModelVersion | None:
        if spec.model.registry is not None:
            return self.registries.get(spec.model)
        if spec.model.version is None:
            return self.models.latest(workspace, spec.model.name)
        return self.models.get(workspace, spec.model.name, spec.model.version)

    def invoke(
        self, workspace: str, endpoint: str, body: bytes, deployment: str | None = None
    ) -> InvokeResult:
        """Score through the endpoint's router, with its key, from any process."""
        row = self.catalog.get_endpoint_row(workspace, endpoint)
        if row is None:
            raise BackendError(f"endpoint {endpoint} does not exist in workspace {workspace}")
        headers = {"Content-Type": "application/json"}
        if row["auth_mode"] != _OPEN_AUTH_MODE:
            headers["Authorization"] = (
                f"Bearer {self.get_endpoint_keys(workspace, endpoint).primary}"
            )
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        conn = http.client.HTTPConnection("127.0.0.1", int(row["port"]), timeout=_INVOKE_TIMEOUT_S)
        try:
            conn.request("POST", "/score", body, headers)
            response = conn.getresponse()
            return InvokeResult(
                response.status, response.read(), response.getheader(DEPLOYMENT_HEADER) or ""
            )
        except ConnectionRefusedError as exc:
            raise BackendError(
                f"endpoint {endpoint} is not being served on port {row['port']}: "
                "is `amlops up` running?"
            ) from exc
        except OSError as exc:
            raise BackendError(f"endpoint {endpoint}: {exc}") from exc
        finally:
            conn.close()

    def deployment_tags(self, workspace: str, endpoint: str) -> dict[str, dict[str, str]]:
        """The tags of each of an endpoint's deployments, by deployment name, as recorded
        (read-only: unlike ``list_deployments`` it neither checks nor routes the servers)."""
        rows = self.catalog.list_deployment_rows(workspace, endpoint)
        return {row["name"]: dict(row["tags"]) for row in rows}

    # -- serverless endpoints and Marketplace subscriptions ------------------------------------

    def get_marketplace_subscription(
        self, workspace: str, name: str
    ) -> MarketplaceSubscriptionState | None:
        model_id = self.db.get_meta(f"subscription:{workspace}/{name}")
        if model_id is None:
            return None
        return MarketplaceSubscriptionState(workspace, name, model_id, ProvisioningState.SUCCEEDED)

    def create_or_update_marketplace_subscription(
        self, spec: MarketplaceSubscriptionSpec
    ) -> MarketplaceSubscriptionState:
        self.db.set_meta(f"subscription:{spec.workspace}/{spec.name}", spec.model_id)
        state = self.get_marketplace_subscription(spec.workspace, spec.name)
        assert state is not None
        return state

    def _serverless_record(self, workspace: str, name: str) -> dict[str, str] | None:
        text = self.db.get_meta(f"serverless:{workspace}/{name}")
        return json.loads(text) if text is not None else None

    def get_serverless_endpoint(self, workspace: str, name: str) -> ServerlessEndpointState | None:
        record = self._serverless_record(workspace, name)
        endpoint = self.get_endpoint(workspace, name)
        if record is None or endpoint is None:
            return None
        deployment = next(
            (d for d in self.list_deployments(workspace, name) if d.name == SERVERLESS_DEPLOYMENT),
            None,
        )
        state = ProvisioningState.STOPPED
        message = ""
        if endpoint.provisioning_state is ProvisioningState.SUCCEEDED and deployment is not None:
            state, message = deployment.provisioning_state, deployment.message
        return ServerlessEndpointState(
            workspace=workspace,
            name=name,
            model_id=record["model_id"],
            auth_mode=endpoint.auth_mode,
            provisioning_state=state,
            scoring_uri=endpoint.scoring_uri,
            message=message,
            tags=endpoint.tags,
        )

    def create_or_update_serverless_endpoint(
        self, spec: ServerlessEndpointSpec
    ) -> ServerlessEndpointState:
        """Serve the model from the local registry, or refuse naming it (BackendError)."""
        self._require_started()
        model = self.get_registry_model(spec.model)
        assert model is not None  # get_registry_model raises for a model it does not have
        script = scoring_script(model)
        self.db.set_meta(
            f"serverless:{spec.workspace}/{spec.name}", json.dumps({"model_id": spec.model_id})
        )
        self.create_or_update_endpoint(
            EndpointSpec(
                spec.workspace,
                spec.name,
                spec.auth_mode,
                {SERVERLESS_DEPLOYMENT: 100},
                description=f"serverless: {spec.model_id}",
                tags=spec.tags,
            )
        )
        fingerprint = hashlib.sha256(f"{spec.model_id}\n{model.digest}".encode()).hexdigest()
        self.create_or_update_deployment(
            DeploymentSpec(
                workspace=spec.workspace,
                endpoint=spec.name,
                name=SERVERLESS_DEPLOYMENT,
                model=model.ref,
                code_dir=script.parent,
                scoring_script=script.name,
                fingerprint=f"sha256:{fingerprint}",
                tags=spec.tags,
            )
        )
        state = self.get_serverless_endpoint(spec.workspace, spec.name)
        assert state is not None
        return state

    def delete_serverless_endpoint(self, workspace: str, name: str) -> None:
        self.delete_endpoint(workspace, name)
        self.db.delete_meta(f"serverless:{workspace}/{name}")

    def get_serverless_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys:
        return self.get_endpoint_keys(workspace, name)

    # -- the local driver's records --------------------------------------------------------

    def request_run(self, workspace: str, pipeline: str, at: str) -> None:
        """``amlops run``: ask for a run of ``pipeline``; the reconcile loop starts it."""
        self.objects.request("Pipeline", workspace, pipeline, at)

    def record_manifests_path(self, path: Path) -> None:
        """Remember what ``amlops up`` runs, for an ``amlops run`` given no --path."""
        self.db.set_meta("manifests", str(path.resolve()))

    def last_manifests_path(self) -> str | None:
        """The manifests the last ``amlops up`` ran (absolute), or None before any."""
        return self.db.get_meta("manifests")

    def _require_started(self) -> None:
        if self._lock_file is None:
            raise BackendError("the local backend was opened read-only; call start() first")


def prepare_state_dir(root: Path) -> list[str]:
    """Make ``root`` a state directory this process may write: created 0700 with a
    ``.gitignore``, or an existing one checked. Returns notes for the user; raises StateError
    naming the folder and saying what to do."""
    if root.exists() and not root.is_dir():
        raise StateError(_not_a_folder(root))
    created = False
    if not root.exists():
        try:
            root.mkdir(mode=_STATE_DIR_MODE, parents=True)
            created = True
        except FileExistsError:  # made in the meantime by a parallel `amlops`
            pass
        except OSError as exc:
            raise StateError(_cannot_create(root, exc)) from exc
    # root bypasses permissions, not a read-only mount: access() answers for both
    if not os.access(root, os.W_OK | os.X_OK):
        raise StateError(
            f"the state directory {root} is not writable: make it writable or pass another "
            "--state-dir (`amlops status` reads it as it is)"
        )
    notes = []
    ours = created or _holds_only_state(root)
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o077:
        if ours:
            os.chmod(root, _STATE_DIR_MODE)
            notes.append(
                f"{root} could be read by other users (mode {mode:o}) and holds endpoint keys: "
                f"made it {_STATE_DIR_MODE:o}"
            )
        else:  # a folder the user made, maybe shared on purpose: theirs to decide
            notes.append(
                f"{root} can be read by other users (mode {mode:o}) and will hold endpoint "
                f"keys: consider `chmod {_STATE_DIR_MODE:o} {root}`"
            )
    gitignore = root / ".gitignore"
    # not in a folder of the user's that holds other things: `*` would hide those from Git
    if not gitignore.exists() and ours:
        with contextlib.suppress(FileExistsError), gitignore.open("x") as f:
            f.write(_GITIGNORE)
    return notes


def _holds_only_state(root: Path) -> bool:
    """Empty, or only what amlops keeps there (made by an older amlops, or by this one after
    the user pointed it at an empty folder): amlops may decide its mode and its .gitignore."""
    own = {CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", ".gitignore", "up.lock"}
    own |= {"artifacts", "models", "runs", "deployments", "keys", "bin", "registries"}
    return all(entry.name in own for entry in root.iterdir())


def _not_a_folder(root: Path) -> str:
    if root.exists():
        return (
            f"the state directory {root} is a file, not a folder: move it aside or pass "
            "another --state-dir"
        )
    return f"there is no state directory {root}: run `amlops up` first, or pass its --state-dir"


def _cannot_create(root: Path, exc: OSError) -> str:
    blocker = next((p for p in root.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return (
            f"cannot create the state directory {root}: {blocker} is not a folder; pass "
            "another --state-dir"
        )
    return (
        f"cannot create the state directory {root} ({exc.strerror}): pass a --state-dir in a "
        "folder you may write to"
    )


def _lock(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise StateDirLockedError(
            f"{path.parent} is in use by {holder}; stop it first or use another --state-dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"amlops (pid {os.getpid()})")
    f.flush()
    return f


def lock_holder(state_dir: Path) -> str | None:
    """Who holds the state directory ("amlops (pid N)"), or None when nobody runs things."""
    path = state_dir / "up.lock"
    try:
        f = path.open("r")
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def lock_state_dir(root: Path) -> IO[str]:
    """Take ``root`` for this process (``up.lock``), as ``LocalBackend.start`` does: for a
    driver that keeps only its object records here (``amlops up --backend azureml``).
    Raises StateDirLockedError naming the holder."""
    return _lock(root / "up.lock")
