"""Pipeline runs on Azure ML: a run is an Azure ML job, its steps the job's child runs.

**Submitting.** ``PipelineRunSpec.job`` (CLI v2 YAML, local paths already absolute) goes
through the SDK's own loader (``azure.ai.ml.load_job``) and ``ml.jobs.create_or_update``,
which uploads code folders and local inputs and registers written-out and file steps as
anonymous components (versioned by their content). A step's component the repository declares
with a ``name`` is registered first as a named component version decided by its content
digest, like a model: the declared version when it names one (refused when that version exists
with other content), else the latest version when its ``amlops-digest`` matches, else the next.
``azureml:NAME:VERSION`` and registry components are passed through as written (Azure refuses a
workspace component that does not exist, naming it).

The job is named ``PIPELINE-N-FINGERPRINT`` (N: one more than the runs of the pipeline Azure
lists), so a retried submit of the same run is recognised by name. It carries the spec's tags,
``amlops-owner``, ``amlops-pipeline``, ``amlops-trigger`` and ``amlops-fingerprint``, and, as
job properties (which never change), the pipeline's name (what a targeted read filters on) and
the model each registered output becomes.

**Observing.** ``latest_pipeline_run`` reads the newest job of the pipeline with our owner tag:
from the workspace's list of amlops jobs (``snapshots``, shared by every pipeline) while it is
fresh and the run is finished, else with a targeted read (the job this process submitted, by
name; or the pipeline's jobs, filtered by property). Steps are the job's child runs (run
history); a finished run is read once and kept.

**Outputs.** When the job completes, each output the spec names a model for is registered as a
model version whose path is the job's output (``azureml://jobs/JOB/outputs/OUT``), with the
run's tags, ``amlops-run`` and ``amlops-owner``: once, found again by its ``amlops-run`` tag
after a restart. A pinned version that exists from another run fails the run, as on the local
backend.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from amlops.backends import base
from amlops.backends.azureml import backend as azureml  # its tags; it imports this module
from amlops.backends.azureml.calls import translate
from amlops.backends.azureml.snapshots import Scope
from amlops.core.digest import tree_digest
from amlops.core.files import PathRefusedError
from amlops.core.provenance import TAG_PIPELINE, TAG_RUN, TAG_TRIGGER
from amlops.kinds.pipeline import MAIN_STEP

if TYPE_CHECKING:
    from amlops.backends.azureml.backend import AzureMLBackend

# job properties (immutable in Azure ML): the pipeline, and output -> "name[:version]"
PROP_PIPELINE = TAG_PIPELINE
PROP_REGISTER = "amlops-register-"
_STATUS = {
    "NotStarted": base.JobStatus.NOT_STARTED,
    "Starting": base.JobStatus.QUEUED,
    "Provisioning": base.JobStatus.QUEUED,
    "Preparing": base.JobStatus.QUEUED,
    "Queued": base.JobStatus.QUEUED,
    "Scheduled": base.JobStatus.QUEUED,
    "Running": base.JobStatus.RUNNING,
    "Finalizing": base.JobStatus.RUNNING,
    "CancelRequested": base.JobStatus.RUNNING,
    "Completed": base.JobStatus.COMPLETED,
    "Failed": base.JobStatus.FAILED,
    "Canceled": base.JobStatus.CANCELED,
}
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_NAME = 200


def job_status(value: Any) -> base.JobStatus:
    """Azure ML's job status (NotResponding, Paused, Unknown: still active)."""
    text = status_text(value)
    return _STATUS.get(text, base.JobStatus.NOT_STARTED if not text else base.JobStatus.RUNNING)


def status_text(value: Any) -> str:
    """A status as Azure ML spells it (the SDK gives a str or its enum)."""
    return str(getattr(value, "value", value) or "")


def _short(fingerprint: str) -> str:
    return fingerprint.removeprefix("sha256:")[:12]


def job_name(pipeline: str, number: int, fingerprint: str) -> str:
    """``PIPELINE-N-FINGERPRINT`` in the characters Azure ML allows in a job name."""
    slug = _SLUG.sub("-", pipeline).strip("-_") or "pipeline"
    if not slug[0].isalpha():
        slug = f"p-{slug}"
    return f"{slug[:_MAX_NAME]}-{number}-{_short(fingerprint)}"


def _local_paths(value: Any) -> Iterator[Path]:
    """Absolute paths under ``code:`` / ``path:`` anywhere in a job (what the SDK uploads)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in ("code", "path") and isinstance(item, str) and item.startswith("/"):
                yield Path(item)
            else:
                yield from _local_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _local_paths(item)


def load(job: Mapping[str, Any], origin: Path) -> Any:
    """The SDK's Job entity for a CLI v2 job, as ``az ml job create -f`` loads it."""
    from azure.ai.ml import load_job

    text = yaml.safe_dump(dict(job), sort_keys=False)
    return load_job(io.StringIO(text), relative_origin=str(origin / "job.yml"))


def component_digest(component: Mapping[str, Any]) -> str:
    """The content of a component: its YAML with each local folder's digest in place of the
    folder's path (moving a checkout is no change; editing its code is)."""

    def content(value: Any, key: str = "") -> Any:
        if isinstance(value, Mapping):
            return {k: content(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [content(v) for v in value]
        if key in ("code", "path") and isinstance(value, str) and value.startswith("/"):
            return tree_digest(Path(value))
        return value

    text = json.dumps(content(component), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def admit_files(backend: AzureMLBackend, job: Mapping[str, Any], where: str) -> None:
    """BackendError unless every file the job names stays in the source root (links in its
    folders included): checked right before the SDK uploads them."""
    try:
        for path in _local_paths(job):
            backend._admit(path)
    except (OSError, PathRefusedError) as exc:
        raise base.BackendError(f"{where}: {exc}") from exc


def job_document(job: Mapping[str, Any], pipeline: str) -> dict[str, Any]:
    """The job amlops submits for a run of ``pipeline`` (a schedule's too), before its name and
    tags: the pipeline and the models its outputs become as job properties (found by, and
    registered from, when it completes), the outputs' ``name``/``version`` taken out (Azure ML
    would register them too, without owner and provenance), the pipeline as the default
    experiment."""
    body = copy.deepcopy(dict(job))
    properties: dict[str, str] = {PROP_PIPELINE: pipeline}
    for output, value in dict(body.get("outputs") or {}).items():
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            target = value.pop("name")
            version = value.pop("version", None)
            properties[PROP_REGISTER + str(output)] = (
                f"{target}:{version}" if version is not None else target
            )
    body.pop("name", None)
    body.setdefault("experiment_name", pipeline)
    body["properties"] = {**dict(body.get("properties") or {}), **properties}
    return body


class Pipelines:
    """The pipeline half of an :class:`AzureMLBackend` (its clients, calls and owner)."""

    def __init__(self, backend: AzureMLBackend) -> None:
        self.b = backend
        self._submitted: dict[tuple[str, str], str] = {}  # (workspace, pipeline) -> job name
        self._finished: dict[tuple[str, str], base.PipelineRun] = {}  # (workspace, job) -> run
        self._components: dict[tuple[str, str], str] = {}  # (workspace, digest) -> name:version

    # -- reading ---------------------------------------------------------------------------

    def _scope(self, workspace: str) -> Scope:
        return (workspace, "pipeline", "")

    def _owned(self, jobs: Any) -> dict[str, Any]:
        """Newest owned job per pipeline name."""
        newest: dict[str, Any] = {}
        for job in jobs:
            tags = dict(getattr(job, "tags", None) or {})
            pipeline = tags.get(TAG_PIPELINE)
            if pipeline is None or tags.get(base.TAG_OWNER) != self.b.owner:
                continue
            if pipeline not in newest or _created(job) > _created(newest[pipeline]):
                newest[pipeline] = job
        return newest

    def latest(self, workspace: str, pipeline: str) -> base.PipelineRun | None:
        ml = self.b.client(workspace)
        found = self.b.snapshots.lookup(
            self._scope(workspace),
            pipeline,
            lambda: self.b._call(
                "amlops jobs",
                lambda: list(self._owned(ml.jobs.list(tag=TAG_PIPELINE)).items()),
            ),
            lambda job: job_status(job.status).terminal,
        )
        if found is None:
            found = self._targeted(workspace, pipeline)
        if found is None:
            return None
        return self._run(workspace, pipeline, found)

    def _targeted(self, workspace: str, pipeline: str) -> Any:
        ml = self.b.client(workspace)
        name = self._submitted.get((workspace, pipeline))
        if name is not None:
            job = self.b._get(f"job {name}", lambda: ml.jobs.get(name))
            if job is not None and not job_status(job.status).terminal:
                return job  # ours, running: one GET
            # finished: the list says which run is the newest (a schedule may have fired since)
            self._submitted.pop((workspace, pipeline), None)
        jobs = self.b._call(
            f"jobs of pipeline {pipeline}",
            lambda: list(ml.jobs.list(properties=f"{PROP_PIPELINE}={pipeline}")),
        )
        return self._owned(jobs).get(pipeline)

    def _run(self, workspace: str, pipeline: str, job: Any) -> base.PipelineRun:
        name = str(job.name)
        known = self._finished.get((workspace, name))
        if known is not None:
            return known
        tags = {str(k): str(v) for k, v in (job.tags or {}).items()}
        status = job_status(job.status)
        steps = self._steps(workspace, job) if _is_pipeline(job) else (_main_step(job),)
        message = ""
        if status is base.JobStatus.FAILED:
            failed = [s for s in steps if s.status is base.JobStatus.FAILED]
            message = "; ".join(
                f"step {s.name} failed: {s.message or 'no message'}" for s in failed
            )
            message = message or "Azure ML: the job failed"
        elif status is base.JobStatus.CANCELED:
            message = "canceled in Azure ML"
        ends = [s.ended_at for s in steps if s.ended_at]
        run = base.PipelineRun(
            run_id=name,
            workspace=workspace,
            pipeline=pipeline,
            fingerprint=tags.get(azureml.TAG_FINGERPRINT, ""),
            trigger=tags.get(TAG_TRIGGER, ""),
            status=status,
            steps=steps,
            created_at=str(_created(job) or ""),
            ended_at=max(ends) if status.terminal and ends else None,
            message=self.b.scrub(message),
            tags=tags,
        )
        if status is base.JobStatus.COMPLETED:
            try:
                run = replace(run, outputs=self._register_outputs(workspace, job, tags))
            except base.BackendError as exc:  # refused (transient errors are retried)
                run = replace(
                    run, status=base.JobStatus.FAILED, message=f"registering outputs: {exc}"
                )
        if status.terminal:
            self._finished[(workspace, name)] = run
        return run

    def _steps(self, workspace: str, job: Any) -> tuple[base.StepRun, ...]:
        ml = self.b.client(workspace)
        name = str(job.name)
        children = self.b._call(f"steps of job {name}", lambda: _children(ml, name))
        by_name: dict[str, base.StepRun] = {}
        for child in sorted(children, key=lambda c: str(c.get("created") or "")):
            step = str(child.get("step") or "")
            if not step:
                continue
            by_name[step] = base.StepRun(
                name=step,
                status=job_status(child.get("status")),
                compute=str(child.get("compute") or ""),
                started_at=child.get("started"),
                ended_at=child.get("ended"),
                message=self.b.scrub(str(child.get("message") or "")),
            )
        declared = [str(n) for n in (getattr(job, "jobs", None) or {})]
        rest = [base.StepRun(n, base.JobStatus.NOT_STARTED) for n in declared if n not in by_name]
        return (*by_name.values(), *rest)

    # -- outputs -----------------------------------------------------------------------------

    def _register_outputs(
        self, workspace: str, job: Any, tags: Mapping[str, str]
    ) -> dict[str, str]:
        properties = {str(k): str(v) for k, v in (job.properties or {}).items()}
        wanted = {
            k.removeprefix(PROP_REGISTER): v
            for k, v in properties.items()
            if k.startswith(PROP_REGISTER)
        }
        outputs: dict[str, str] = {}
        for output, target in sorted(wanted.items()):
            name, _, version = target.partition(":")
            kind = getattr((job.outputs or {}).get(output), "type", None) or "custom_model"
            outputs[output] = self._register(
                workspace, job, output, name, version or None, str(kind), tags
            )
        return outputs

    def _register(
        self,
        workspace: str,
        job: Any,
        output: str,
        name: str,
        version: str | None,
        kind: str,
        tags: Mapping[str, str],
    ) -> str:
        from azure.ai.ml.entities import Model

        run_id = str(job.name)
        ml = self.b.client(workspace)
        label = f"model {name}:{version}" if version else f"model {name}"
        if version is not None:
            existing = self.b._get(label, lambda: ml.models.get(name, version=version))
            found = [existing] if existing is not None else []
        else:
            found = self.b._get(label, lambda: list(ml.models.list(name=name))) or []
        for model in found:
            model_tags = dict(model.tags or {})
            if model_tags.get(TAG_RUN) == run_id and model_tags.get(base.TAG_OWNER) == self.b.owner:
                return f"{model.name}:{model.version}"  # registered before (another process)
        if version is not None and found:
            other = dict(found[0].tags or {}).get(TAG_RUN) or "not a run of amlops"
            raise base.BackendError(
                f"{label} already exists ({other}); Azure ML never changes a version: leave "
                f"`version` out of output {output} to register the next one"
            )
        model = Model(
            name=name,
            version=version,
            path=f"azureml://jobs/{run_id}/outputs/{output}",
            type=kind,
            tags={
                # the run's tags, as the local backend tags what a run registers
                **{
                    k: v
                    for k, v in tags.items()
                    if k not in (base.TAG_OWNER, azureml.TAG_FINGERPRINT)
                },
                TAG_RUN: run_id,
                base.TAG_OWNER: self.b.owner,
            },
        )
        created = self.b._call(
            f"register {label} from run {run_id}", lambda: ml.models.create_or_update(model)
        )
        self.b.snapshots.invalidate((workspace, "model", name), str(created.version))
        self.b._versions.pop((workspace, name, str(created.version)), None)
        return f"{created.name}:{created.version}"

    # -- writing -----------------------------------------------------------------------------

    def submit(self, spec: base.PipelineRunSpec) -> base.PipelineRun:
        b = self.b
        where = f"pipeline {spec.pipeline}"
        admit_files(b, spec.job, where)
        ml = b.client(spec.workspace)
        job_body = job_document(spec.job, spec.pipeline)
        self._name_components(spec.workspace, job_body)
        number = self._runs_so_far(spec.workspace, spec.pipeline) + 1
        name = job_name(spec.pipeline, number, spec.fingerprint)
        existing = b._get(f"job {name}", lambda: ml.jobs.get(name))
        if existing is not None:
            tags = dict(existing.tags or {})
            b._check_owner(f"job {name}", tags)
            if tags.get(azureml.TAG_FINGERPRINT) == spec.fingerprint:
                self._submitted[(spec.workspace, spec.pipeline)] = name
                return self._run(spec.workspace, spec.pipeline, existing)
            name = f"{name}-{number}"
        job_body["name"] = name
        job_body["tags"] = {
            **{str(k): str(v) for k, v in dict(job_body.get("tags") or {}).items()},
            **spec.tags,
            base.TAG_OWNER: b.owner,
            TAG_PIPELINE: spec.pipeline,
            TAG_TRIGGER: spec.trigger,
            azureml.TAG_FINGERPRINT: spec.fingerprint,
        }
        origin = b.source_root or Path.cwd()
        try:
            job = load(job_body, origin)
        except Exception as exc:
            raise _translated(b, exc, f"{where}: the job") from None
        b.snapshots.invalidate(self._scope(spec.workspace), spec.pipeline)
        created = b._upload(f"submit {where}", lambda: ml.jobs.create_or_update(job))
        self._submitted[(spec.workspace, spec.pipeline)] = str(created.name)
        steps = (
            tuple(
                base.StepRun(str(n), base.JobStatus.NOT_STARTED)
                for n in (getattr(created, "jobs", None) or {})
            )
            if _is_pipeline(created)
            else (_main_step(created),)
        )
        return base.PipelineRun.submitted(
            spec,
            str(created.name),
            job_status(created.status),
            steps,
            created_at=str(_created(created) or ""),
            tags=dict(job_body["tags"]),
        )

    def _runs_so_far(self, workspace: str, pipeline: str) -> int:
        ml = self.b.client(workspace)
        from azure.ai.ml.constants import ListViewType

        jobs = self.b._call(
            f"jobs of pipeline {pipeline}",
            lambda: list(
                ml.jobs.list(
                    properties=f"{PROP_PIPELINE}={pipeline}", list_view_type=ListViewType.ALL
                )
            ),
        )
        return len(jobs)

    def cancel(self, workspace: str, run_id: str) -> None:
        b = self.b
        ml = b.client(workspace)
        job = b._get(f"job {run_id}", lambda: ml.jobs.get(run_id))
        if job is None:
            return
        b._check_owner(f"job {run_id}", dict(job.tags or {}))
        if job_status(job.status).terminal or status_text(job.status) == "CancelRequested":
            return
        pipeline = dict(job.tags or {}).get(TAG_PIPELINE, "")
        b.snapshots.invalidate(self._scope(workspace), pipeline)
        b._pollers[("job", workspace, run_id)] = b._call(
            f"cancel job {run_id}", lambda: ml.jobs.begin_cancel(run_id)
        )

    # -- components ----------------------------------------------------------------------------

    def _name_components(self, workspace: str, job: dict[str, Any]) -> None:
        """Register each step's component that has a name (a file or a repository Component
        put in place) and name it by ``azureml:NAME:VERSION`` in the job."""
        for step in _steps_of(job):
            component = step.get("component")
            if isinstance(component, dict) and isinstance(component.get("name"), str):
                step["component"] = "azureml:" + self._component(workspace, component)

    def _component(self, workspace: str, component: dict[str, Any]) -> str:
        from azure.ai.ml import load_component

        b = self.b
        name = str(component["name"])
        pinned = str(component["version"]) if component.get("version") is not None else None
        for nested in _steps_of(component):  # a pipeline component's own named steps first
            inner = nested.get("component")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                nested["component"] = "azureml:" + self._component(workspace, inner)
        try:
            digest = component_digest(component)
        except OSError as exc:
            raise base.BackendError(f"component {name}: {exc}") from exc
        known = self._components.get((workspace, digest))
        if known is not None:
            return known
        ml = b.client(workspace)
        label = f"component {name}:{pinned}" if pinned else f"component {name}"
        if pinned is not None:
            existing = b._get(label, lambda: ml.components.get(name, version=pinned))
            candidates = [existing] if existing is not None else []
        else:
            candidates = b._get(label, lambda: list(ml.components.list(name=name))) or []
        for found in candidates:
            tags = dict(found.tags or {})
            if tags.get(azureml.TAG_DIGEST) == digest:
                b._check_owner(f"component {name}:{found.version}", tags)
                ref = f"{found.name}:{found.version}"
                self._components[(workspace, digest)] = ref
                return ref
        if pinned is not None and candidates:
            raise base.BackendError(
                f"{label} already exists in Azure ML with other content; Azure ML never "
                "changes a version: give the changed component a new version"
            )
        version = pinned or str(1 + max((_int(c.version) for c in candidates), default=0))
        body = {k: v for k, v in component.items() if k not in ("version", "tags")}
        body["tags"] = {
            **{str(k): str(v) for k, v in dict(component.get("tags") or {}).items()},
            azureml.TAG_DIGEST: digest,
            base.TAG_OWNER: b.owner,
        }
        origin = b.source_root or Path.cwd()
        try:
            entity = load_component(
                io.StringIO(yaml.safe_dump(body, sort_keys=False)),
                relative_origin=str(origin / "component.yml"),
            )
        except Exception as exc:
            raise _translated(b, exc, label) from None
        entity.version = version
        created = b._upload(
            f"register {label}", lambda: ml.components.create_or_update(entity, version=version)
        )
        ref = f"{created.name}:{created.version}"
        self._components[(workspace, digest)] = ref
        return ref


def _steps_of(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    jobs = job.get("jobs")
    if not isinstance(jobs, Mapping):
        return []
    return [step for step in jobs.values() if isinstance(step, dict)]


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _translated(b: AzureMLBackend, exc: Exception, what: str) -> Exception:
    """A loader's refusal: the YAML as written cannot become a job (never transient)."""
    error = translate(exc, what, b.scrub)
    return error if isinstance(error, base.BackendError) else base.BackendError(str(error))


def _created(job: Any) -> str:
    context = getattr(job, "creation_context", None)
    created = getattr(context, "created_at", None)
    return str(created) if created is not None else ""


def _main_step(job: Any) -> base.StepRun:
    """A command job is its own one step, named as the reconcilers name it."""
    compute = str(getattr(job, "compute", None) or "").rsplit("/", 1)[-1]
    return base.StepRun(MAIN_STEP, job_status(job.status), compute=compute)


def _is_pipeline(job: Any) -> bool:
    return str(getattr(job, "type", "")) == "pipeline"


def _children(ml: Any, name: str) -> list[dict[str, Any]]:
    """A job's child runs from run history, with the times and errors the SDK's ``_BaseJob``
    leaves out (``ml.jobs.list(parent_job_name=...)`` would also GET the parent first)."""
    runs = getattr(ml.jobs, "_runs_operations", None)
    rest = getattr(runs, "_operation", None)
    if rest is None:  # a later SDK without it: the public call, without times
        return [
            {
                "step": c.display_name or c.name,
                "status": c.status,
                "compute": c.compute,
                "created": _created(c),
            }
            for c in ml.jobs.list(parent_job_name=name)
        ]
    out: list[dict[str, Any]] = []
    for run in rest.get_child(ml.subscription_id, ml.resource_group_name, ml.workspace_name, name):
        error = getattr(getattr(run, "error", None), "error", None)
        compute = getattr(run, "compute", None)
        out.append(
            {
                "step": run.display_name
                or (run.properties or {}).get("azureml.nodeid")
                or run.name,
                "status": run.status,
                "compute": getattr(compute, "target", None) or getattr(run, "target", None),
                "created": _iso(run.created_utc),
                "started": _iso(run.start_time_utc),
                "ended": _iso(run.end_time_utc),
                "message": getattr(error, "message", None) or "",
            }
        )
    return out


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return str(iso()) if callable(iso) else str(value)
