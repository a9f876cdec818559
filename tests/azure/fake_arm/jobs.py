"""Jobs, components and computes of the fake, and the run-history data plane for child jobs.

* ``Jobs_*`` (create, get, list with the ``tag`` / ``properties`` / ``jobType`` /
  ``listViewType`` filters, newest first, paged like every list; cancel as a long-running
  operation): a created job runs on the test clock. A pipeline job's steps
  (``properties.jobs``) start in dependency order (``${{parent.jobs.X...}}`` bindings); each
  is ``Queued`` for ``durations["jobQueued"]`` clock seconds, ``Running`` for
  ``durations["jobStep"]``, then ``Completed``, or ``Failed`` with the code and message of a
  ``faults.fail_provisioning(NAME, kind="jobSteps", ...)`` that matches its name. The first
  failure stops the run: running steps are ``Canceled``, later ones never start, the job is
  ``Failed``. A command job is one such step. ``Jobs_Cancel`` answers ``202`` + ``Location``;
  the job is ``CancelRequested`` for ``durations["jobCancel"]`` seconds, then ``Canceled``.
  On completion each job output gets a ``uri`` under the default datastore.
* ``ComponentContainers_*`` / ``ComponentVersions_*`` (the SDK registers anonymous components
  for inline and file steps): a version's ``componentSpec`` never changes (``409``).
* ``Compute_Get`` / ``Compute_List``: clusters seeded with :meth:`JobsApi.add_compute` (Pulumi
  makes them; ``get_compute`` and the SDK read them).
* A job that names a workspace component, compute or code version that does not exist is
  refused (``400 UserError``, naming it); registry components pass through.
* Not ARM (never recorded for oav, no swagger here): the workspace discovery document
  (``GET /discovery``) and run history's ``GET /history/v1.0/.../runs/{id}/children``,
  what ``ml.jobs.list(parent_job_name=...)`` reads.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .faults import ProvisioningFailure
from .state import PROVIDER

if TYPE_CHECKING:
    from .server import Call, FakeArm, Handler, Reply, Route

JsonDict = dict[str, Any]

STEP_KIND = "jobSteps"  # faults.fail_provisioning(kind=...) for a failing step
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
DISCOVERY_PATH = "/discovery"
DISCOVERY_OP = "(Discovery)"  # answered without a token, as the SDK asks for it
_HISTORY = re.compile(
    r"^/history/v1\.0/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
    r"(?:/experiments/[^/]+)?/runs/(?P<run>[^/]+)(?P<children>/children)?$",
    re.IGNORECASE,
)
HISTORY_OP = "(RunHistory)"
_PARENT_JOB = re.compile(r"\$\{\{\s*parent\.jobs\.([A-Za-z0-9_]+)\.")


@dataclass
class _Step:
    name: str
    deps: tuple[str, ...]
    compute: str
    run_id: str
    failure: ProvisioningFailure | None
    # clock seconds, computed by _Run.timeline
    ready: float | None = None
    end: float | None = None


@dataclass
class _Run:
    job_id: str  # the ARM id, as created
    name: str
    experiment: str
    submitted: float
    steps: list[_Step]
    pipeline: bool
    cancel_requested: float | None = None
    cancel_done: float | None = None

    def timeline(self, queued_s: float, step_s: float) -> float | None:
        """Fill in each step's ready/end times; returns when the run stops early (its first
        failure, or its cancellation), None if it does not."""
        ends: dict[str, float] = {}
        for step in self.steps:  # topological order
            if any(d not in ends for d in step.deps):
                step.ready = step.end = None
                continue
            step.ready = max([ends[d] for d in step.deps], default=self.submitted)
            step.end = step.ready + queued_s + step_s
            if step.failure is None:  # what needs a failing step never starts
                ends[step.name] = step.end
        failures = [s.end for s in self.steps if s.failure is not None and s.end is not None]
        stops = [t for t in (min(failures, default=None), self.cancel_done) if t is not None]
        return min(stops) if stops else None


class JobsApi:
    """The jobs part of a :class:`FakeArm` (``fake.jobs``)."""

    def __init__(self, fake: FakeArm) -> None:
        from .server import _listed, _route

        self.fake = fake
        self._runs: dict[str, _Run] = {}
        self._wall0 = time.time() - fake.clock.now()
        fake.durations.setdefault("jobQueued", 10.0)
        fake.durations.setdefault("jobStep", 60.0)
        fake.durations.setdefault("jobCancel", 0.0)
        self.routes: list[Route] = [
            _route("Jobs_List", "GET", "/jobs"),
            _route("Jobs_Get", "GET", "/jobs/{id}"),
            _route("Jobs_CreateOrUpdate", "PUT", "/jobs/{id}"),
            _route("Jobs_Cancel", "POST", "/jobs/{id}/cancel"),
            *_listed("ComponentContainers", "/components", delete=False),
            *_listed("ComponentVersions", "/components/{name}/versions", "{version}", delete=False),
            *_listed("Compute", "/computes", put=False, delete=False),
        ]

    # ------------------------------------------------------------------ wiring
    def handlers(self) -> dict[str, Handler]:
        fake = self.fake
        put_version = fake._put_version("components")

        async def component_version(call: Call) -> Reply:
            existing = fake.state.get(call.path)
            new = (call.body or {}).get("properties", {}) if isinstance(call.body, dict) else {}
            if (
                existing is not None
                and "componentSpec" in new
                and _spec_key(new["componentSpec"])
                != _spec_key(existing["properties"].get("componentSpec"))
            ):
                from .server import ArmError

                raise ArmError(
                    409,
                    "UserError",
                    f"component version {call.params['name']}:{call.params['version']} "
                    "exists with another componentSpec; versions are immutable",
                )
            return await put_version(call)

        return {
            "Jobs_List": self._list,
            "Jobs_Get": self._get,
            "Jobs_CreateOrUpdate": self._put,
            "Jobs_Cancel": self._cancel,
            "ComponentContainers_List": fake._list_children("components"),
            "ComponentContainers_Get": fake._get_resource,
            "ComponentContainers_CreateOrUpdate": fake._put_container("components"),
            "ComponentVersions_List": fake._list_versions,
            "ComponentVersions_Get": fake._get_resource,
            "ComponentVersions_CreateOrUpdate": component_version,
            "Compute_List": fake._list_children("computes"),
            "Compute_Get": fake._get_resource,
        }

    def reset(self) -> None:
        self._runs.clear()

    def unrouted(self, method: str, path: str) -> tuple[str, Reply] | None:
        """Answers for what is not ARM: the discovery document and run history."""
        from .server import ArmError, Reply

        if method == "GET" and path == DISCOVERY_PATH:
            base = self.fake.base_url
            keys = ("api", "catalog", "experimentation", "history", "hyperdrive", "pipelines")
            return DISCOVERY_OP, Reply(200, {key: base for key in keys})
        m = _HISTORY.match(path) if method == "GET" else None
        if m is None:
            return None
        self.advance()
        parent = self.fake.state.resource_id(m["ws"], "jobs", m["run"])
        run = self._runs.get(parent.lower())
        if m["children"]:
            if run is None:
                error = ArmError(404, "UserError", f"run {m['run']} not found")
                return HISTORY_OP, Reply(404, error.body())
            children = [self._child(run, s) for s in run.steps if run.pipeline]
            children = [c for c in children if c is not None]
            return HISTORY_OP, Reply(200, {"value": children, "continuationToken": None})
        for candidate in self._runs.values():
            for step in candidate.steps:
                if candidate.pipeline and step.run_id == m["run"]:
                    child = self._child(candidate, step)
                    if child is not None:
                        return HISTORY_OP, Reply(200, child)
        error = ArmError(404, "UserError", f"run {m['run']} not found")
        return HISTORY_OP, Reply(404, error.body())

    # ------------------------------------------------------------------ seeding and helpers
    def add_compute(
        self,
        name: str,
        workspace: str | None = None,
        vm_size: str = "Standard_DS3_v2",
        max_nodes: int = 4,
    ) -> JsonDict:
        """A ready AmlCompute cluster (Pulumi makes them; the fake only serves them)."""
        state = self.fake.state
        rid = state.resource_id(workspace or self.fake.workspace, "computes", name)
        body: JsonDict = {
            "id": rid,
            "name": name,
            "type": f"{PROVIDER}/workspaces/computes",
            "location": self.fake.location,
            "properties": {
                "computeType": "AmlCompute",
                "computeLocation": self.fake.location,
                "provisioningState": "Succeeded",
                "isAttachedCompute": False,
                "disableLocalAuth": True,
                "properties": {
                    "vmSize": vm_size,
                    "vmPriority": "Dedicated",
                    "scaleSettings": {
                        "maxNodeCount": max_nodes,
                        "minNodeCount": 0,
                        "nodeIdleTimeBeforeScaleDown": "PT120S",
                    },
                },
            },
            "systemData": self.fake._system_data(),
        }
        state.put(rid, body)
        return body

    def job(self, name: str, workspace: str | None = None) -> JsonDict | None:
        """The stored ARM body of a job, brought up to the clock."""
        self.advance()
        return self.fake.state.get(
            self.fake.state.resource_id(workspace or self.fake.workspace, "jobs", name)
        )

    def jobs(self, workspace: str | None = None) -> list[JsonDict]:
        self.advance()
        ws = self.fake.state.workspace_id(workspace or self.fake.workspace)
        return self.fake.state.children(ws, "jobs")

    def children(self, name: str, workspace: str | None = None) -> list[JsonDict]:
        """The child runs (run-history shape) of a pipeline job."""
        self.advance()
        rid = self.fake.state.resource_id(workspace or self.fake.workspace, "jobs", name)
        run = self._runs.get(rid.lower())
        if run is None or not run.pipeline:
            return []
        return [c for c in (self._child(run, s) for s in run.steps) if c is not None]

    def _iso(self, clock_s: float) -> str:
        moment = datetime.datetime.fromtimestamp(self._wall0 + clock_s, datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # ------------------------------------------------------------------ the clock
    def _step_status(self, run: _Run, step: _Step, now: float, stop: float | None) -> str:
        if step.ready is None or step.end is None:
            return "NotStarted"
        queued_s = self.fake.durations["jobQueued"]
        if stop is not None and step.ready > stop:
            return "NotStarted"
        if stop is not None and now >= stop and step.end > stop:
            return "Canceled"
        if now < step.ready:
            return "NotStarted"
        if now < step.ready + queued_s:
            return "Queued"
        if now < step.end:
            return "Running"
        return "Failed" if step.failure is not None else "Completed"

    def advance(self) -> None:
        """Bring every job's status (and its outputs) up to the clock."""
        fake = self.fake
        now = fake.clock.now()
        queued_s, step_s = fake.durations["jobQueued"], fake.durations["jobStep"]
        for op in list(fake.state.operations.values()):
            if op.action == "cancelJob" and not op.done and now >= op.started + op.duration:
                op.status = "Succeeded"
                op.end_time = self._iso(now)
        for key, run in list(self._runs.items()):
            body = fake.state.get(run.job_id)
            if body is None:
                del self._runs[key]
                continue
            props = body["properties"]
            if props.get("status") in TERMINAL:
                continue
            stop = run.timeline(queued_s, step_s)
            statuses = [self._step_status(run, s, now, stop) for s in run.steps]
            failed = [s for s, st in zip(run.steps, statuses, strict=True) if st == "Failed"]
            if stop is not None and now >= stop:
                status = "Failed" if failed else "Canceled"
            elif run.cancel_requested is not None:
                status = "CancelRequested"
            elif all(st == "Completed" for st in statuses):
                status = "Completed"
            elif any(st in ("Running", "Completed") for st in statuses):
                status = "Running"
            else:
                status = "Queued"
            if status == props.get("status"):
                continue
            props["status"] = status
            if status == "Completed":
                for out_name, output in (props.get("outputs") or {}).items():
                    if isinstance(output, dict) and not output.get("uri"):
                        output["uri"] = (
                            f"azureml://datastores/workspaceblobstore/paths/azureml/"
                            f"{run.name}/{out_name}/"
                        )
            fake.state.put(run.job_id, body)

    def _child(self, run: _Run, step: _Step) -> JsonDict | None:
        now = self.fake.clock.now()
        stop = run.timeline(self.fake.durations["jobQueued"], self.fake.durations["jobStep"])
        status = self._step_status(run, step, now, stop)
        if status == "NotStarted" or step.ready is None or step.end is None:
            return None
        queued_s = self.fake.durations["jobQueued"]
        child: JsonDict = {
            "runId": step.run_id,
            "parentRunId": run.name,
            "rootRunId": run.name,
            "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)),
            "name": step.name,
            "displayName": step.name,
            "status": status,
            "createdUtc": self._iso(step.ready),
            "runType": "azureml.StepRun",
            "target": step.compute,
            "compute": {"target": step.compute},
            "properties": {"azureml.nodeid": step.name, "StepType": "PythonScriptStep"},
            "tags": {},
        }
        if status != "Queued":
            child["startTimeUtc"] = self._iso(step.ready + queued_s)
        if status in TERMINAL:
            end = step.end if stop is None or step.end <= stop else stop
            child["endTimeUtc"] = self._iso(end)
        if status == "Failed" and step.failure is not None:
            child["error"] = {"error": {"code": step.failure.code, "message": step.failure.message}}
        return child

    # ------------------------------------------------------------------ handlers
    async def _get(self, call: Call) -> Reply:
        from .server import Reply

        self.advance()
        return Reply(200, self.fake._require(call.path))

    async def _list(self, call: Call) -> Reply:
        from .server import Reply

        self.advance()
        parent = call.path.rsplit("/", 1)[0]
        items = self.fake.state.children(parent, "jobs")
        items.reverse()  # newest first, as the service lists them
        items = [i for i in items if _listed(i, call.query)]
        return Reply(200, self.fake._page(call, items))

    async def _put(self, call: Call) -> Reply:
        from .server import ArmError, Reply

        fake = self.fake
        if not isinstance(call.body, dict) or not isinstance(call.body.get("properties"), dict):
            raise ArmError(400, "UserError", "a job needs properties")
        props = call.body["properties"]
        existing = fake.state.get(call.path)
        if existing is not None:
            # a job's definition never changes: only its tags, description, display name
            old = existing["properties"]
            for key in ("tags", "description", "displayName", "isArchived"):
                if key in props:
                    old[key] = props[key]
            fake.state.put(call.path, existing)
            self.advance()
            return Reply(200, fake.state.get(call.path))
        job_type = props.get("jobType")
        if job_type not in ("Pipeline", "Command"):
            raise ArmError(400, "UserError", f"the fake runs Pipeline and Command jobs: {job_type}")
        self._check_references(call, props)
        resource = fake._envelope(call.path, "jobs", call.body, None)
        out = resource["properties"]
        name = resource["name"]
        out["status"] = "NotStarted"
        out.setdefault("experimentName", "Default")
        out.setdefault("isArchived", False)
        ws_id = call.path.rsplit("/jobs/", 1)[0]
        out["services"] = {
            "Studio": {
                "jobServiceType": "Studio",
                "endpoint": f"https://ml.azure.localhost/runs/{name}?wsid={ws_id}",
            },
            "Tracking": {
                "jobServiceType": "Tracking",
                "endpoint": f"azureml://{fake.location}.api.azureml.localhost/mlflow/v1.0{ws_id}",
            },
        }
        fake.state.put(call.path, resource)
        self._runs[call.path.lower()] = _Run(
            job_id=call.path,
            name=name,
            experiment=str(out["experimentName"]),
            submitted=fake.clock.now(),
            steps=self._steps(name, props),
            pipeline=job_type == "Pipeline",
        )
        self.advance()
        return Reply(201, fake.state.get(call.path))

    async def _cancel(self, call: Call) -> Reply:
        from .server import Reply

        fake = self.fake
        job_id = call.path[: -len("/cancel")]
        body = fake._require(job_id)
        self.advance()
        run = self._runs.get(job_id.lower())
        if body["properties"].get("status") in TERMINAL or run is None:
            return Reply(200)
        now = fake.clock.now()
        duration = fake.durations["jobCancel"]
        if run.cancel_requested is None:
            run.cancel_requested = now
            run.cancel_done = now + duration
        op = fake.state.start_operation(job_id, "jobs", "cancelJob", duration)
        self.advance()
        return fake._lro_accepted(call, op.id)

    # ------------------------------------------------------------------ what a job names
    def _check_references(self, call: Call, props: JsonDict) -> None:
        from .server import ArmError

        ws_id = call.path.rsplit("/jobs/", 1)[0].lower()
        named: list[tuple[str, str]] = []
        for key in ("componentId", "computeId", "codeId"):
            if isinstance(props.get(key), str):
                named.append((key, props[key]))
        settings = props.get("settings") or {}
        if isinstance(settings, dict) and isinstance(settings.get("default_compute"), str):
            named.append(("settings.default_compute", settings["default_compute"]))
        for step, node in (props.get("jobs") or {}).items():
            if not isinstance(node, dict):
                continue
            for key in ("componentId", "computeId"):
                if isinstance(node.get(key), str):
                    named.append((f"jobs.{step}.{key}", node[key]))
        for where, value in named:
            arm = value.removeprefix("azureml:")
            if not arm.lower().startswith(ws_id + "/"):
                continue  # a registry's asset, serverless compute, a binding: not ours to check
            if self.fake.state.get(arm) is None:
                tail = arm[len(ws_id) + 1 :].split("/")  # kind/name[/versions/version]
                what = f"{tail[0]} {':'.join(tail[1::2])}"
                raise ArmError(400, "UserError", f"{where}: {what} not found ({arm})")

    def _steps(self, name: str, props: JsonDict) -> list[_Step]:
        def compute_of(node: JsonDict) -> str:
            value = node.get("computeId") or node.get("compute")
            if not isinstance(value, str):
                settings = props.get("settings") or {}
                value = settings.get("default_compute") if isinstance(settings, dict) else None
            if not isinstance(value, str) or not value:
                value = props.get("computeId") if isinstance(props.get("computeId"), str) else None
            return str(value or "serverless").rsplit("/", 1)[-1].removeprefix("azureml:")

        failures = self.fake.faults
        if props.get("jobType") != "Pipeline":
            failure = failures.take_provisioning(STEP_KIND, name)
            return [_Step(name, (), compute_of(props), name, failure)]
        nodes = {str(k): v for k, v in (props.get("jobs") or {}).items() if isinstance(v, dict)}
        deps = {
            k: tuple(sorted({d for d in _PARENT_JOB.findall(json.dumps(v)) if d in nodes} - {k}))
            for k, v in nodes.items()
        }
        order: list[str] = []
        while len(order) < len(nodes):
            ready = [k for k in nodes if k not in order and all(d in order for d in deps[k])]
            if not ready:  # a cycle: the service refuses it
                from .server import ArmError

                raise ArmError(400, "UserError", "the pipeline's steps form a cycle")
            order.extend(sorted(ready))
        return [
            _Step(
                step,
                deps[step],
                compute_of(nodes[step]),
                str(uuid.uuid4()),
                failures.take_provisioning(STEP_KIND, step),
            )
            for step in order
        ]


def _spec_key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True)


def _listed(item: JsonDict, query: dict[str, str]) -> bool:
    props = item.get("properties", {})
    wanted_type = query.get("jobType")
    if wanted_type and str(props.get("jobType", "")).lower() != wanted_type.lower():
        return False
    view = query.get("listViewType", "ActiveOnly")
    archived = bool(props.get("isArchived"))
    if (view == "ActiveOnly" and archived) or (view == "ArchivedOnly" and not archived):
        return False
    tag = query.get("tag")
    if tag and not _has(props.get("tags") or {}, tag):
        return False
    wanted = query.get("properties")
    if wanted:
        for entry in wanted.split(","):
            if entry and not _has(props.get("properties") or {}, entry):
                return False
    return True


def _has(mapping: dict[str, Any], entry: str) -> bool:
    """``key`` or ``key=value``, as the service reads a tag / properties filter."""
    key, sep, value = entry.partition("=")
    if key not in mapping:
        return False
    return not sep or str(mapping[key]) == value
