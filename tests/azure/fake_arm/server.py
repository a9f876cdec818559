"""A stateful fake of the Microsoft.MachineLearningServices ARM API over HTTPS on loopback.

Runs an aiohttp server in a background thread. Operations are named by the operationIds of
Microsoft's REST specs; long-running ones answer the way the spec's
``x-ms-long-running-operation-options`` say: creates with ``201`` + ``Azure-AsyncOperation``
(final state from the original URI), deletes and key regeneration with ``202`` + ``Location``.
Every spec'd request/response pair can be recorded for ``oav validate-traffic``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .certs import TestPKI
from .clock import Clock
from .credential import audience_of, decode_jwt
from .faults import Faults
from .jobs import DISCOVERY_OP, JobsApi  # jobs.py imports this module in functions only
from .log import RequestLog, TrafficRecorder
from .state import PROVIDER, State, new_key, utcnow

PAGE_SIZE = 100  # items per page of a list, as ARM pages them (then a nextLink)

# Azurite's published development account (https://learn.microsoft.com/azure/storage/common/
# storage-use-azurite): public, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

# The SDK sends api-versions for which the vendored specs have no file; their calls are
# recorded under the nearest published api-version (see tests/azure/specs/README.md).
SPEC_API_VERSION = {
    "2024-10-01-preview": "2024-04-01",
    "2023-06-01-preview": "2023-08-01-preview",  # schedules
    "2025-01-01-preview": "2024-01-01-preview",  # command jobs (Jobs_CreateOrUpdate)
}

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class StorageAccount:
    """Where blobs go: an Azurite account reachable as ``https://{name}.blob.{suffix}``."""

    name: str
    key: str
    suffix: str  # e.g. "core.localhost:10000"
    ca_file: Path | None = None

    @property
    def blob_url(self) -> str:
        return f"https://{self.name}.blob.{self.suffix}"


@dataclass(frozen=True)
class Route:
    operation_id: str
    method: str
    pattern: re.Pattern[str]


_WS = (
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
_N = r"[^/]+"


def _route(operation_id: str, method: str, tail: str) -> Route:
    regex = _WS + re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_N})", tail) + "$"
    return Route(operation_id, method, re.compile(regex, re.IGNORECASE))


def _crud(prefix: str, tail: str, *, put: bool = True, delete: bool = True) -> list[Route]:
    routes = [_route(f"{prefix}_Get", "GET", tail)]
    if put:
        routes.append(_route(f"{prefix}_CreateOrUpdate", "PUT", tail))
    if delete:
        routes.append(_route(f"{prefix}_Delete", "DELETE", tail))
    return routes


def _listed(prefix: str, tail: str, item: str = "{name}", **crud: bool) -> list[Route]:
    """``<prefix>_List`` on the collection ``tail`` and :func:`_crud` on ``tail/item``."""
    return [_route(f"{prefix}_List", "GET", tail), *_crud(prefix, f"{tail}/{item}", **crud)]


ROUTES: list[Route] = [
    _route("Workspaces_Get", "GET", ""),
    *_listed("Datastores", "/datastores", put=False, delete=False),
    _route("Datastores_ListSecrets", "POST", "/datastores/{name}/listSecrets"),
    *_listed("ModelContainers", "/models"),
    *_listed("ModelVersions", "/models/{name}/versions", "{version}"),
    *_listed("CodeContainers", "/codes"),
    *_listed("CodeVersions", "/codes/{name}/versions", "{version}"),
    _route(
        "CodeVersions_CreateOrGetStartPendingUpload",
        "POST",
        "/codes/{name}/versions/{version}/startPendingUpload",
    ),
    *_listed("EnvironmentContainers", "/environments"),
    *_listed("EnvironmentVersions", "/environments/{name}/versions", "{version}"),
    *_listed("OnlineEndpoints", "/onlineEndpoints"),
    _route("OnlineEndpoints_Update", "PATCH", "/onlineEndpoints/{name}"),
    _route("OnlineEndpoints_ListKeys", "POST", "/onlineEndpoints/{name}/listKeys"),
    _route("OnlineEndpoints_RegenerateKeys", "POST", "/onlineEndpoints/{name}/regenerateKeys"),
    _route("OnlineEndpoints_GetToken", "POST", "/onlineEndpoints/{name}/token"),
    *_listed("OnlineDeployments", "/onlineEndpoints/{endpoint}/deployments"),
    _route("OnlineDeployments_Update", "PATCH", "/onlineEndpoints/{endpoint}/deployments/{name}"),
    _route(
        "OnlineDeployments_GetLogs",
        "POST",
        "/onlineEndpoints/{endpoint}/deployments/{name}/getLogs",
    ),
    *_listed("ServerlessEndpoints", "/serverlessEndpoints"),
    _route("ServerlessEndpoints_ListKeys", "POST", "/serverlessEndpoints/{name}/listKeys"),
    _route(
        "ServerlessEndpoints_RegenerateKeys", "POST", "/serverlessEndpoints/{name}/regenerateKeys"
    ),
    *_listed("MarketplaceSubscriptions", "/marketplaceSubscriptions"),
]

_OPERATION_STATUS = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.MachineLearningServices/locations/[^/]+/"
    r"mfeOperation(?P<which>sStatus|Results)/(?P<id>[^/]+)$",
    re.IGNORECASE,
)
# Names the log gives to requests that are not spec'd operations (never recorded for oav).
ASYNC_STATUS_OP = "(AsyncOperationStatus)"
OPERATION_RESULT_OP = "(OperationResult)"
METADATA_OP = "(CloudMetadata)"

# Long-running kinds: plural path segment -> ARM type under workspaces/.
_LRO_KINDS = {
    "onlineEndpoints": "onlineEndpoints",
    "deployments": "onlineEndpoints/deployments",
    "serverlessEndpoints": "serverlessEndpoints",
    "marketplaceSubscriptions": "marketplaceSubscriptions",
}
# The names faults.fail_provisioning() and FakeArm.durations use for them.
KIND_NAMES = {
    "onlineEndpoints": "onlineEndpoints",
    "deployments": "onlineDeployments",
    "serverlessEndpoints": "serverlessEndpoints",
    "marketplaceSubscriptions": "marketplaceSubscriptions",
}


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> JsonDict:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Call"], Awaitable[Reply]]


@dataclass
class Call:
    """One routed request."""

    route: Route
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    api_version: str
    path: str

    @property
    def workspace(self) -> str:
        return self.params["ws"]


class FakeArm:
    """The fake ARM endpoint. ``start()`` / ``stop()``, or use it as a context manager.

    * ``base_url``: ``https://127.0.0.1:PORT`` (the cloud's resource manager)
    * ``clock``: :class:`Clock` that long-running operations finish against
    * ``durations``: clock seconds a create takes, by kind (``onlineDeployments`` ...)
    * ``faults``: :class:`Faults`; ``log``: :class:`RequestLog`; ``state``: :class:`State`
    * ``poll_interval``: the ``Retry-After`` (seconds) sent with operation status answers
    """

    def __init__(
        self,
        pki: TestPKI,
        *,
        storage: StorageAccount | None = None,
        subscription: str = "00000000-0000-0000-0000-0000000000a1",
        resource_group: str = "rg-amlops-test",
        workspace: str = "ws-amlops-test",
        location: str = "westeurope",
        cloud_name: str | None = None,
        traffic_dir: Path | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.pki = pki
        self.storage = storage
        self.subscription = subscription
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        self.cloud_name = cloud_name or f"AmlopsFake{uuid.uuid4().hex[:10]}"
        self.clock = Clock()
        self.faults = Faults()
        self.log = RequestLog()
        self.state = State(
            self.clock, subscription=subscription, resource_group=resource_group, location=location
        )
        self.recorder = (
            TrafficRecorder(traffic_dir, prefix=f"{self.cloud_name}-") if traffic_dir else None
        )
        self.poll_interval = poll_interval
        self.page_size = PAGE_SIZE  # items per page of a list (then a nextLink)
        self.durations: dict[str, float] = {
            "onlineEndpoints": 0.0,
            "onlineDeployments": 60.0,
            "serverlessEndpoints": 0.0,
            "marketplaceSubscriptions": 0.0,
            "delete": 0.0,
            "regenerateKeys": 0.0,
        }
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._containers: set[str] = set()
        self._routes: list[Route] = list(ROUTES)
        self._handlers: dict[str, Handler] = self._build_handlers()
        self.jobs = JobsApi(self)
        self.add_api(self.jobs.routes, self.jobs.handlers())
        from .schedules import SchedulesApi

        self.schedules = SchedulesApi(self)
        self.add_api(self.schedules.routes, self.schedules.handlers())
        self.add_workspace(workspace)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def audience(self) -> str:
        return self.base_url

    def start(self) -> FakeArm:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-arm", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fake ARM server did not start")
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ctx)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
        try:
            fut.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = None
            self._runner = None

    def __enter__(self) -> FakeArm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything but the workspaces and datastores; clear faults and the log; page
        lists as the service does again."""
        self.faults.clear()
        self.log.reset()
        self.page_size = PAGE_SIZE
        with self.state.locked():
            keep = {
                k: v
                for k, v in self.state.resources.items()
                if k.endswith(tuple(f"/workspaces/{w.lower()}" for w in self._workspaces()))
                or "/datastores/" in k
            }
            self.state.resources.clear()
            self.state.resources.update(keep)
            self.state.keys.clear()
            self.state.logs.clear()
            self.state.operations.clear()
        self.jobs.reset()

    def add_api(self, routes: list[Route], handlers: dict[str, Handler]) -> None:
        """Serve more spec'd operations (a module of the fake: jobs.py)."""
        self._routes.extend(routes)
        self._handlers.update(handlers)

    def _workspaces(self) -> list[str]:
        return [
            v["name"]
            for v in self.state.resources.values()
            if v.get("type") == f"{PROVIDER}/workspaces"
        ]

    # ------------------------------------------------------------------ cloud description
    def storage_suffix(self) -> str:
        return self.storage.suffix if self.storage else "core.localhost"

    def cloud_metadata(self) -> dict[str, str]:
        """The ``cloud_metadata=`` dict MLClient takes (with ``cloud=self.cloud_name``)."""
        return {
            "azure_portal": "https://portal.azure.localhost/",
            "resource_manager": self.base_url + "/",
            "active_directory": "https://login.localhost/",
            "aml_resource_id": "https://ml.azure.localhost/",
            "storage_endpoint": self.storage_suffix(),
            "registry_discovery_endpoint": f"{self.base_url}/registry-discovery/",
        }

    def arm_metadata(self) -> list[JsonDict]:
        """What ``GET /metadata/endpoints`` serves (the ``ARM_CLOUD_METADATA_URL`` format)."""
        return [
            {
                "name": self.cloud_name,
                "portal": "https://portal.azure.localhost/",
                "resourceManager": self.base_url + "/",
                "authentication": {
                    "loginEndpoint": "https://login.localhost/",
                    "audiences": [self.base_url + "/"],
                    "tenant": "common",
                    "identityProvider": "AAD",
                },
                "suffixes": {
                    "storage": self.storage_suffix(),
                    "keyVaultDns": "vault.localhost",
                    "acrLoginServer": "azurecr.localhost",
                },
            }
        ]

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/metadata/endpoints?api-version=2019-05-01"

    # ------------------------------------------------------------------ seeding
    def add_workspace(self, name: str) -> None:
        ws_id = self.state.workspace_id(name)
        storage_name = self.storage.name if self.storage else AZURITE_ACCOUNT
        rg_id = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
        accounts = f"storageAccounts/{storage_name}"
        insights = "Microsoft.Insights/components/ai-amlops-test"
        self.state.put(
            ws_id,
            {
                "id": ws_id,
                "name": name,
                "type": f"{PROVIDER}/workspaces",
                "location": self.location,
                "tags": {},
                "identity": {
                    "type": "SystemAssigned",
                    "principalId": str(uuid.uuid4()),
                    "tenantId": str(uuid.uuid4()),
                },
                "sku": {"name": "Basic", "tier": "Basic"},
                "kind": "Default",
                "properties": {
                    "friendlyName": name,
                    "description": "amlops test workspace",
                    "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, ws_id)),
                    "storageAccount": f"{rg_id}/providers/Microsoft.Storage/{accounts}",
                    "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/kv-amlops-test",
                    "applicationInsights": f"{rg_id}/providers/{insights}",
                    "discoveryUrl": f"{self.base_url}/discovery",
                    "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.localhost/mlflow/v1.0{ws_id}",
                    "provisioningState": "Succeeded",
                    "publicNetworkAccess": "Enabled",
                    "hbiWorkspace": False,
                    "v1LegacyMode": False,
                },
                "systemData": self._system_data(),
            },
        )
        container = "azureml-blobstore-" + str(uuid.uuid5(uuid.NAMESPACE_URL, ws_id))
        ds_id = f"{ws_id}/datastores/workspaceblobstore"
        self.state.put(
            ds_id,
            {
                "id": ds_id,
                "name": "workspaceblobstore",
                "type": f"{PROVIDER}/workspaces/datastores",
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": storage_name,
                    "containerName": container,
                    "endpoint": self.storage_suffix(),
                    "protocol": "https",
                    "credentials": {
                        "credentialsType": "AccountKey",
                        "secrets": {"secretsType": "AccountKey"},
                    },
                    "isDefault": True,
                    "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                    "description": "default blob datastore (Azurite)",
                    "tags": {},
                    "properties": {},
                },
                "systemData": self._system_data(),
            },
        )

    def ensure_container(self, container: str) -> None:
        """Create ``container`` in the storage account (once)."""
        if self.storage is None or container in self._containers:
            return
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient(
            self.storage.blob_url,
            credential={"account_name": self.storage.name, "account_key": self.storage.key},
            connection_verify=str(self.storage.ca_file) if self.storage.ca_file else True,
        )
        try:
            client.create_container(container)
        except ResourceExistsError:
            pass
        finally:
            client.close()
        self._containers.add(container)

    def default_container(self, workspace: str | None = None) -> str:
        ds = self.state.get(
            self.state.resource_id(workspace or self.workspace, "datastores", "workspaceblobstore")
        )
        assert ds is not None
        return str(ds["properties"]["containerName"])

    # ------------------------------------------------------------------ dispatch
    @staticmethod
    def _system_data() -> JsonDict:
        now = utcnow()
        return {
            "createdAt": now,
            "createdBy": "tester@amlops.localhost",
            "createdByType": "User",
            "lastModifiedAt": now,
            "lastModifiedBy": "tester@amlops.localhost",
            "lastModifiedByType": "User",
        }

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self._routes:
            if route.method != method:
                continue
            m = route.pattern.match(path)
            if m:
                return route, {k: v for k, v in m.groupdict().items() if v is not None}
        return None

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            claims = decode_jwt(header.removeprefix("Bearer "))
        except (ValueError, IndexError, json.JSONDecodeError):
            return False
        return audience_of(str(claims.get("aud", ""))) == self.audience

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        path = request.path
        method = request.method.upper()
        api_version = request.query.get("api-version")
        self.state.settle()
        if path == "/metadata/endpoints":
            return self._finish(
                method,
                path,
                api_version,
                METADATA_OP,
                Reply(200, self.arm_metadata()),
                False,
                started,
            )
        unrouted = None if path.startswith("/subscriptions/") else self.jobs.unrouted(method, path)
        if unrouted is not None and unrouted[0] == DISCOVERY_OP:
            return self._finish(method, path, api_version, *unrouted, False, started)
        matched = self._match(method, path)
        status_match = _OPERATION_STATUS.match(path) if method == "GET" else None
        operation_id = (
            matched[0].operation_id
            if matched
            else (
                (
                    ASYNC_STATUS_OP
                    if status_match.group("which").lower() == "sstatus"
                    else OPERATION_RESULT_OP
                )
                if status_match
                else None
            )
        )
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return self._finish(
                method,
                path,
                api_version,
                operation_id,
                Reply(400, ArmError(400, "BadRequest", "body is not JSON").body()),
                False,
                started,
            )

        if not self._authorized(request):
            reply = Reply(
                401, ArmError(401, "AuthenticationFailed", "missing or wrong bearer token").body()
            )
            return self._finish(method, path, api_version, operation_id, reply, False, started)

        fault = self.faults.take(method, path, operation_id)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = _num(fault.retry_after)
            reply = Reply(fault.status, fault.error_body(), headers)
        elif unrouted is not None:
            reply = unrouted[1]
        elif status_match:
            reply = self._operation_status(
                status_match.group("which").lower(), status_match.group("id"), api_version
            )
        elif matched is None:
            reply = Reply(
                404,
                ArmError(
                    404,
                    "NoRegisteredProviderFound"
                    if "/providers/" not in path
                    else "ResourceNotFound",
                    f"no fake for {method} {path}",
                ).body(),
            )
        elif not api_version:
            reply = Reply(
                400, ArmError(400, "MissingApiVersionParameter", "api-version is required").body()
            )
        else:
            route, params = matched
            call = Call(route, params, dict(request.query), body, api_version, path)
            try:
                if call.workspace.lower() not in {w.lower() for w in self._workspaces()}:
                    raise ArmError(404, "ResourceNotFound", f"workspace {call.workspace} not found")
                reply = await self._handlers[route.operation_id](call)
            except ArmError as err:
                reply = Reply(err.status, err.body())
        response = self._finish(
            method, path, api_version, operation_id, reply, fault is not None, started
        )
        if matched is not None and self.recorder is not None:
            self._record(request, matched[0].operation_id, body, reply)
        return response

    def _finish(
        self,
        method: str,
        path: str,
        api_version: str | None,
        operation_id: str | None,
        reply: Reply,
        fault: bool,
        started: float,
    ) -> web.StreamResponse:
        self.log.add(
            {
                "monotonic": time.monotonic(),
                "method": method,
                "path": path,
                "api_version": api_version,
                "operation_id": operation_id,
                "status": reply.status,
                "fault": fault,
            }
        )
        headers = {"x-ms-request-id": str(uuid.uuid4()), **reply.headers}
        if reply.body is None or reply.status == 204:
            return web.Response(status=reply.status, headers=headers)
        return web.json_response(reply.body, status=reply.status, headers=headers)

    def _record(self, request: web.Request, operation_id: str, body: Any, reply: Reply) -> None:
        assert self.recorder is not None
        query = dict(request.query)
        version = query.get("api-version", "")
        query["api-version"] = SPEC_API_VERSION.get(version, version)
        qs = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in query.items())
        url = f"https://management.azure.com{request.path}?{qs}"
        response_headers = {"Content-Type": "application/json"} if reply.body is not None else {}
        response_headers.update(reply.headers)
        self.recorder.record(
            operation_id=operation_id,
            method=request.method.upper(),
            url=url,
            request_headers=dict(request.headers),
            request_body=body,
            status=reply.status,
            response_headers=response_headers,
            response_body=reply.body,
        )

    # ------------------------------------------------------------------ long-running plumbing
    def _status_url(self, which: str, op_id: str, api_version: str) -> str:
        return (
            f"{self.base_url}/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/"
            f"{self.location}/mfeOperation{which}/{op_id}?api-version={api_version}"
        )

    def _operation_status(self, which: str, op_id: str, api_version: str | None) -> Reply:
        op = self.state.operations.get(op_id)
        if op is None:
            return Reply(404, ArmError(404, "ResourceNotFound", "no such operation").body())
        retry = {"Retry-After": _num(self.poll_interval)}
        if which == "sstatus":
            body: JsonDict = {
                "id": self._status_url("sStatus", op.id, api_version or "").split("?")[0],
                "name": op.id,
                "status": op.status,
                "startTime": op.start_time,
            }
            if op.end_time:
                body["endTime"] = op.end_time
            if op.status == "Failed" and op.failure is not None:
                body["error"] = {"code": op.failure.code, "message": op.failure.message}
            return Reply(200, body, {} if op.done else retry)
        # Location polling: 202 while running, then the final answer.
        if not op.done:
            headers = {"Location": self._status_url("Results", op.id, api_version or ""), **retry}
            return Reply(202, None, headers)
        if op.status == "Failed" and op.failure is not None:
            return Reply(400, {"error": {"code": op.failure.code, "message": op.failure.message}})
        if op.action == "regenerateKeys":
            return Reply(200, None)
        return Reply(204, None)

    def _lro_created(self, call: Call, resource: JsonDict, op_id: str, status: int) -> Reply:
        headers = {
            "Azure-AsyncOperation": self._status_url("sStatus", op_id, call.api_version),
            "x-ms-async-operation-timeout": "PT1H",
        }
        return Reply(status, resource, headers if status == 201 else {})

    def _lro_accepted(self, call: Call, op_id: str) -> Reply:
        headers = {
            "Location": self._status_url("Results", op_id, call.api_version),
            # The specs say Retry-After >= 10 on these 202s; later polls use poll_interval.
            "Retry-After": _num(max(10.0, self.poll_interval)),
            "x-ms-async-operation-timeout": "PT1H",
        }
        return Reply(202, None, headers)

    # ------------------------------------------------------------------ handlers
    def _build_handlers(self) -> dict[str, Handler]:
        h: dict[str, Handler] = {}
        h["Workspaces_Get"] = self._get_workspace
        h["Datastores_List"] = self._list_children("datastores")
        h["Datastores_Get"] = self._get_resource
        h["Datastores_ListSecrets"] = self._list_secrets
        for prefix, seg in (
            ("Model", "models"),
            ("Code", "codes"),
            ("Environment", "environments"),
        ):
            h[f"{prefix}Containers_List"] = self._list_children(seg)
            h[f"{prefix}Containers_Get"] = self._get_resource
            h[f"{prefix}Containers_CreateOrUpdate"] = self._put_container(seg)
            h[f"{prefix}Containers_Delete"] = self._delete_sync
            h[f"{prefix}Versions_List"] = self._list_versions
            h[f"{prefix}Versions_Get"] = self._get_resource
            h[f"{prefix}Versions_CreateOrUpdate"] = self._put_version(seg)
            h[f"{prefix}Versions_Delete"] = self._delete_sync
        h["CodeVersions_CreateOrGetStartPendingUpload"] = self._start_pending_upload
        for prefix, seg in (
            ("OnlineEndpoints", "onlineEndpoints"),
            ("OnlineDeployments", "deployments"),
            ("ServerlessEndpoints", "serverlessEndpoints"),
            ("MarketplaceSubscriptions", "marketplaceSubscriptions"),
        ):
            h[f"{prefix}_List"] = self._list_children(seg)
            h[f"{prefix}_Get"] = self._get_resource
            h[f"{prefix}_CreateOrUpdate"] = self._put_tracked(seg)
            h[f"{prefix}_Delete"] = self._delete_lro
        h["OnlineEndpoints_Update"] = self._patch_tracked
        h["OnlineDeployments_Update"] = self._patch_tracked
        h["OnlineEndpoints_ListKeys"] = self._list_keys
        h["ServerlessEndpoints_ListKeys"] = self._list_keys
        h["OnlineEndpoints_RegenerateKeys"] = self._regenerate_keys
        h["ServerlessEndpoints_RegenerateKeys"] = self._regenerate_keys
        h["OnlineEndpoints_GetToken"] = self._get_token
        h["OnlineDeployments_GetLogs"] = self._get_logs
        return h

    @staticmethod
    def _resource_path(call: Call) -> str:
        """The resource id a call names (its path without an action suffix)."""
        path = call.path
        for action in (
            "/listSecrets",
            "/listKeys",
            "/regenerateKeys",
            "/token",
            "/getLogs",
            "/startPendingUpload",
        ):
            if path.lower().endswith(action.lower()):
                return path[: -len(action)]
        return path

    def _require(self, resource_id: str) -> JsonDict:
        body = self.state.get(resource_id)
        if body is None:
            name = resource_id.rsplit("/", 1)[-1]
            raise ArmError(
                404, "UserError", f"Could not find the resource {name!r} ({resource_id})."
            )
        return body

    async def _get_workspace(self, call: Call) -> Reply:
        body = self._require(call.path)
        # the port is known only once the server listens (after add_workspace in __init__)
        body["properties"]["discoveryUrl"] = f"{self.base_url}/discovery"
        return Reply(200, body)

    async def _get_resource(self, call: Call) -> Reply:
        return Reply(200, self._require(call.path))

    def _list_children(self, segment: str) -> Handler:
        async def handler(call: Call) -> Reply:
            parent = call.path.rsplit("/", 1)[0]
            items = self.state.children(parent, segment)
            if segment == "datastores" and call.query.get("isDefault", "").lower() == "true":
                items = [i for i in items if i["properties"].get("isDefault")]
            return Reply(200, self._page(call, items))

        return handler

    async def _list_versions(self, call: Call) -> Reply:
        container_id = call.path.rsplit("/", 1)[0]
        wanted_hash = call.query.get("hash")
        if wanted_hash is not None:
            # The hash look-up (code assets) names a fresh container; the service answers with
            # the versions of any container in the workspace whose content hash matches.
            codes = self.state.resource_id(call.workspace, "codes")
            items = [
                version
                for container in self.state.children(codes.rsplit("/", 1)[0], "codes")
                for version in self.state.children(container["id"], "versions")
                if version["properties"].get("properties", {}).get("hash_sha256") == wanted_hash
                and version["properties"]["properties"].get("hash_version")
                == call.query.get(
                    "hashVersion", version["properties"]["properties"].get("hash_version")
                )
            ]
        else:
            items = self.state.children(container_id, "versions")
        order = call.query.get("$orderBy", call.query.get("$orderby", "")).lower()
        if "desc" in order:
            items.reverse()
        top = call.query.get("$top")
        if top and top.isdigit():
            items = items[: int(top)]
        return Reply(200, self._page(call, items))

    def _page(self, call: Call, items: list[JsonDict]) -> JsonDict:
        """One page of a list, as the service pages them: ``page_size`` items from ``$skip``,
        and a ``nextLink`` to the rest (which the SDK's pagers follow)."""
        skip = call.query.get("$skip", "0")
        if not skip.isdigit():
            raise ArmError(400, "BadArgument", "$skip: not a continuation this fake gave")
        start = int(skip)
        body: JsonDict = {"value": items[start : start + self.page_size]}
        if start + self.page_size < len(items):
            query = {**call.query, "$skip": str(start + self.page_size)}
            qs = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in query.items())
            body["nextLink"] = f"{self.base_url}{call.path}?{qs}"
        return body

    async def _list_secrets(self, call: Call) -> Reply:
        self._require(self._resource_path(call))
        if self.storage is None:
            raise ArmError(400, "UserError", "this fake has no storage account")
        return Reply(200, {"secretsType": "AccountKey", "key": self.storage.key})

    def _envelope(
        self, resource_id: str, arm_type: str, body: JsonDict, existing: JsonDict | None
    ) -> JsonDict:
        resource = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k not in {"id", "name", "type", "systemData"}
        }
        resource["id"] = resource_id
        resource["name"] = resource_id.rsplit("/", 1)[-1]
        resource["type"] = f"{PROVIDER}/workspaces/{arm_type}"
        system = existing["systemData"] if existing else self._system_data()
        system = {**system, "lastModifiedAt": utcnow()}
        resource["systemData"] = system
        resource.setdefault("properties", {})
        return resource

    def _put_container(self, segment: str) -> Handler:
        async def handler(call: Call) -> Reply:
            if not isinstance(call.body, dict):
                raise ArmError(400, "UserError", "a JSON object is required")
            existing = self.state.get(call.path)
            resource = self._envelope(call.path, segment, call.body, existing)
            props = resource["properties"]
            for readonly in ("latestVersion", "nextVersion"):
                if existing:
                    props[readonly] = existing["properties"].get(readonly)
                else:
                    props.pop(readonly, None)
            props["provisioningState"] = "Succeeded"
            self.state.put(call.path, resource)
            return Reply(200 if existing else 201, self.state.get(call.path))

        return handler

    def _put_version(self, segment: str) -> Handler:
        async def handler(call: Call) -> Reply:
            if not isinstance(call.body, dict):
                raise ArmError(400, "UserError", "a JSON object is required")
            container_id = call.path.split("/versions/")[0]
            container = self.state.get(container_id)
            if container is None:
                container = self._envelope(container_id, segment, {"properties": {}}, None)
                container["properties"]["provisioningState"] = "Succeeded"
            existing = self.state.get(call.path)
            if existing is not None and segment != "environments":
                # Azure ML versions are immutable but for description/tags/stage/isArchived.
                old, new = existing["properties"], call.body.get("properties", {})
                for immutable in ("modelUri", "codeUri", "modelType"):
                    if immutable in new and new[immutable] != old.get(immutable):
                        raise ArmError(
                            409, "UserError", f"{immutable} of an existing version cannot change"
                        )
            resource = self._envelope(call.path, f"{segment}/versions", call.body, existing)
            props = resource["properties"]
            props["provisioningState"] = "Succeeded"
            # An asset's "properties" is a string->string map: the service stores strings.
            if isinstance(props.get("properties"), dict):
                props["properties"] = {k: _str(v) for k, v in props["properties"].items()}
            if segment == "models":
                resource["properties"].setdefault("flavors", {})
            self.state.put(call.path, resource)
            version = call.params["version"]
            props = container["properties"]
            props["latestVersion"] = version
            props["nextVersion"] = (
                str(int(version) + 1) if version.isdigit() else props.get("nextVersion")
            )
            if props["nextVersion"] is None:
                props.pop("nextVersion")
            self.state.put(container_id, container)
            return Reply(200 if existing else 201, self.state.get(call.path))

        return handler

    async def _delete_sync(self, call: Call) -> Reply:
        existed = self.state.delete(call.path)
        return Reply(200 if existed else 204)

    async def _start_pending_upload(self, call: Call) -> Reply:
        if self.storage is None:
            raise ArmError(400, "UserError", "this fake has no storage account")
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        container = f"code-{uuid.uuid4().hex[:24]}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.ensure_container, container)
        sas = generate_container_sas(
            self.storage.name,
            container,
            account_key=self.storage.key,
            permission=ContainerSasPermissions(
                read=True, write=True, list=True, add=True, create=True
            ),
            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        )
        blob_uri = f"{self.storage.blob_url}/{container}"
        rg_id = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
        return Reply(
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": (
                        f"{rg_id}/providers/Microsoft.Storage/storageAccounts/{self.storage.name}"
                    ),
                    "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{sas}"},
                },
                "pendingUploadId": str(uuid.uuid4()),
                "pendingUploadType": "TemporaryBlobReference",
            },
        )

    def _decorate(self, segment: str, call: Call, resource: JsonDict) -> None:
        props = resource["properties"]
        name = resource["name"]
        if segment == "onlineEndpoints":
            props.setdefault("traffic", {})
            props.setdefault("authMode", "Key")
            host = f"{name}.{self.location}.inference.ml.azure.localhost"
            props["scoringUri"] = f"https://{host}/score"
            props["swaggerUri"] = f"https://{host}/swagger.json"
        elif segment == "deployments":
            # What the service fills in when a deployment does not say.
            props.setdefault("scaleSettings", {"scaleType": "Default"})
            props.setdefault(
                "requestSettings",
                {
                    "requestTimeout": "PT5S",
                    "maxConcurrentRequestsPerInstance": 1,
                    "maxQueueWait": "PT0.5S",
                },
            )
            probe = {
                "failureThreshold": 30,
                "successThreshold": 1,
                "timeout": "PT2S",
                "period": "PT10S",
                "initialDelay": "PT10S",
            }
            props.setdefault("livenessProbe", dict(probe))
            props.setdefault("readinessProbe", dict(probe))
        elif segment == "serverlessEndpoints":
            props["inferenceEndpoint"] = {
                "uri": f"https://{name}.{self.location}.models.ai.azure.localhost"
            }
            props["endpointState"] = "Online"
            props["marketplaceSubscriptionId"] = self.state.resource_id(
                call.workspace, "marketplaceSubscriptions", name
            )
        elif segment == "marketplaceSubscriptions":
            props["marketplaceSubscriptionStatus"] = "Subscribed"
            props["marketplacePlan"] = {
                "offerId": str(props.get("modelId", "")).rsplit("/", 1)[-1][:50] or "offer",
                "planId": "plan",
                "publisherId": "publisher",
            }

    def _put_tracked(self, segment: str) -> Handler:
        kind = KIND_NAMES[segment]

        async def handler(call: Call) -> Reply:
            if not isinstance(call.body, dict):
                raise ArmError(400, "UserError", "a JSON object is required")
            if segment == "deployments":
                self._require(call.path.split("/deployments/")[0])
            if segment == "onlineEndpoints":
                self._check_traffic(call)
            existing = self.state.get(call.path)
            resource = self._envelope(call.path, _LRO_KINDS[segment], call.body, existing)
            if segment in ("onlineEndpoints", "deployments"):
                resource.setdefault("location", self.location)
            self._decorate(segment, call, resource)
            resource["properties"]["provisioningState"] = "Updating" if existing else "Creating"
            self.state.put(call.path, resource)
            failure = self.faults.take_provisioning(kind, resource["name"])
            op = self.state.start_operation(
                call.path, segment, "create", self.durations.get(kind, 0.0), failure
            )
            return self._lro_created(call, self.state.get(call.path) or resource, op.id, 201)

        return handler

    def _check_traffic(self, call: Call) -> None:
        """What the service checks of an endpoint's traffic: known deployments, 0..100 each,
        adding up to 100 (or 0)."""
        body = call.body if isinstance(call.body, dict) else {}
        for key in ("traffic", "mirrorTraffic"):
            traffic = body.get("properties", {}).get(key) or {}
            if not isinstance(traffic, dict):
                raise ArmError(400, "UserError", f"{key} must be a map of deployment to percent")
            names = {d["name"].lower() for d in self.state.children(call.path, "deployments")}
            for name, percent in traffic.items():
                if name.lower() not in names:
                    raise ArmError(400, "UserError", f"{key}: deployment {name!r} does not exist")
                if not isinstance(percent, int) or not 0 <= percent <= 100:
                    raise ArmError(400, "UserError", f"{key}: {name!r} must be 0..100")
            total = sum(traffic.values())
            if key == "traffic" and total not in (0, 100):
                raise ArmError(400, "UserError", f"traffic must add up to 100 (or 0), not {total}")

    async def _patch_tracked(self, call: Call) -> Reply:
        existing = self._require(call.path)
        patch = call.body if isinstance(call.body, dict) else {}
        for key in ("tags", "sku", "identity", "kind"):
            if key in patch:
                existing[key] = patch[key]
        existing["properties"].update(patch.get("properties", {}))
        self.state.put(call.path, existing)
        return Reply(200, existing)

    async def _delete_lro(self, call: Call) -> Reply:
        body = self.state.get(call.path)
        if body is None:
            return Reply(204)
        if call.route.operation_id == "OnlineDeployments_Delete":
            endpoint = self.state.get(call.path.split("/deployments/")[0]) or {}
            traffic = endpoint.get("properties", {}).get("traffic") or {}
            name = body["name"].lower()
            if any(k.lower() == name and v for k, v in traffic.items()):
                raise ArmError(
                    400,
                    "UserError",
                    f"deployment {body['name']!r} takes traffic; set it to 0 first",
                )
        duration = self.durations["delete"]
        if duration <= 0:
            # Done at once: 204, the one synchronous answer every spec'd delete allows (the
            # SDK's generated clients for serverless endpoints and marketplace subscriptions
            # accept only 202/204).
            self.state.delete(call.path)
            return Reply(204)
        body["properties"]["provisioningState"] = "Deleting"
        self.state.put(call.path, body)
        segment = call.path.rsplit("/", 2)[-2]
        op = self.state.start_operation(call.path, segment, "delete", duration)
        return self._lro_accepted(call, op.id)

    async def _list_keys(self, call: Call) -> Reply:
        rid = self._resource_path(call)
        self._require(rid)
        return Reply(200, self.state.endpoint_keys(rid))

    async def _regenerate_keys(self, call: Call) -> Reply:
        rid = self._resource_path(call)
        self._require(rid)
        self.state.endpoint_keys(rid)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("keyType") not in ("Primary", "Secondary"):
            raise ArmError(400, "UserError", "keyType must be Primary or Secondary")
        duration = self.durations["regenerateKeys"]
        op = self.state.start_operation(rid, rid.rsplit("/", 2)[-2], "regenerateKeys", duration)
        op.detail = {"keyType": body["keyType"], "keyValue": body.get("keyValue")}
        if duration <= 0:
            self.state.settle()
            return Reply(200)
        return self._lro_accepted(call, op.id)

    async def _get_token(self, call: Call) -> Reply:
        self._require(self._resource_path(call))
        return Reply(
            200,
            {
                "accessToken": new_key(),
                "tokenType": "Bearer",
                "expiryTimeUtc": 0,
                "refreshAfterTimeUtc": 0,
            },
        )

    async def _get_logs(self, call: Call) -> Reply:
        rid = self._resource_path(call)
        self._require(rid)
        lines = self.state.logs.get(rid.lower(), [])
        body = call.body if isinstance(call.body, dict) else {}
        tail = body.get("tail")
        if isinstance(tail, int) and tail > 0:
            lines = lines[-tail:]
        return Reply(200, {"content": "\n".join(lines)})


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
