"""Pipeline: an Azure ML CLI v2 pipeline job, as one typed graph of steps with field paths.

This is the one parser of pipeline jobs: the reference checks (``amlops validate``), the
reconcilers and the local runner all read the job through it. ``parse_job`` is strict (the first
problem is a JobSpecError naming the field: a job that cannot run); the reference checks are
lenient and report every binding that names something missing.

Binding expressions (``${{...}}``) supported, as Azure ML defines them:

* in a step's ``command``: ``${{inputs.x}}`` and ``${{outputs.y}}`` of that step;
* in a step's ``inputs``/``outputs``: ``${{parent.inputs.x}}``, ``${{parent.outputs.x}}`` and
  ``${{parent.jobs.a.outputs.b}}`` (which also makes the step depend on step ``a``);
* ``$[[ ... ]]`` around part of a command makes it optional: it is dropped when an input it
  names was not given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from amlops.core.assets import MODEL_TYPES, ModelRef, compute_name, is_local, parse_model_ref
from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds.base import (
    RULE_SPEC,
    Crd,
    Declared,
    Kind,
    Lifecycle,
    Part,
    check_assets,
    check_workspace,
    mapping,
    spec_finding,
)

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

BINDING_RE = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
OPTIONAL_RE = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
_PARENT_RE = re.compile(r"parent\.(?P<what>inputs|outputs|jobs)\.(?P<rest>[\w.]+)")
JOB: FieldPath = ("spec", "job")  # where a Pipeline manifest holds its job


class JobSpecError(ValueError):
    """The job cannot run as written; ``field`` is the path inside the job."""

    def __init__(self, field_path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    code: str | None
    compute: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    depends_on: frozenset[str]
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None


@dataclass(frozen=True)
class JobGraph:
    steps: tuple[Step, ...]  # topological order, ties broken by the order written
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    # What the job needs before it can run, and what it registers when it completes.
    computes: frozenset[str] = frozenset()
    model_inputs: Mapping[str, ModelRef] = field(default_factory=dict)  # input -> model
    registered_outputs: Mapping[str, ModelRef] = field(default_factory=dict)  # output -> model

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def _mapping(value: Any, where: FieldPath) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise JobSpecError(where, "must be a mapping")
    return value


def bindings(value: Any) -> list[str]:
    """The expressions inside every ``${{...}}`` in ``value`` (a string or a mapping's values)."""
    if isinstance(value, str):
        return BINDING_RE.findall(value)
    if isinstance(value, Mapping):
        return [b for v in value.values() for b in bindings(v)]
    return []


def parent_binding(expr: str) -> tuple[str, list[str]] | None:
    """``parent.inputs.x`` -> ("inputs", ["x"]); None for anything but a ``parent.`` binding."""
    match = _PARENT_RE.fullmatch(expr)
    return (match["what"], match["rest"].split(".")) if match else None


def parse_job(job: Mapping[str, Any]) -> JobGraph:
    """Check the job's structure and bindings; order its steps. Raises JobSpecError."""
    if job.get("type", "pipeline") != "pipeline":
        raise JobSpecError(("type",), "only `type: pipeline` jobs are supported")
    jobs = _mapping(job.get("jobs"), ("jobs",))
    if not jobs:
        raise JobSpecError(("jobs",), "a pipeline needs at least one job under `jobs`")
    inputs = _mapping(job.get("inputs"), ("inputs",))
    outputs = _mapping(job.get("outputs"), ("outputs",))
    settings = _mapping(job.get("settings"), ("settings",))
    default_compute = settings.get("default_compute") or job.get("compute")

    steps: dict[str, Step] = {}
    for name, raw in jobs.items():
        where: FieldPath = ("jobs", name)
        body = _mapping(raw, where)
        if body.get("type", "command") != "command":
            raise JobSpecError((*where, "type"), "only `type: command` steps are supported")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise JobSpecError((*where, "command"), "a command step needs a `command`")
        compute = body.get("compute") or default_compute
        if not isinstance(compute, str):
            raise JobSpecError(
                (*where, "compute"), "set `compute:` or the pipeline's `settings.default_compute`"
            )
        step_inputs = _mapping(body.get("inputs"), (*where, "inputs"))
        step_outputs = _mapping(body.get("outputs"), (*where, "outputs"))
        depends: set[str] = set()
        for kind, values in (("inputs", step_inputs), ("outputs", step_outputs)):
            for key, value in values.items():
                for expr in bindings(value):
                    dep = _check_parent_binding(expr, (*where, kind, key), inputs, outputs, jobs)
                    if dep is not None:
                        depends.add(dep)
        for expr in BINDING_RE.findall(command):
            _check_command_binding(expr, (*where, "command"), step_inputs, step_outputs)
        limits = _mapping(body.get("limits"), (*where, "limits"))
        timeout = limits.get("timeout")
        env = _mapping(body.get("environment_variables"), (*where, "environment_variables"))
        steps[name] = Step(
            name=name,
            command=command,
            code=body.get("code") if isinstance(body.get("code"), str) else None,
            compute=compute_name(compute),
            inputs=step_inputs,
            outputs=step_outputs,
            depends_on=frozenset(depends),
            environment_variables={str(k): str(v) for k, v in env.items()},
            timeout_s=float(timeout) if isinstance(timeout, int | float) else None,
        )
    return JobGraph(
        tuple(_toposort(steps)),
        inputs,
        outputs,
        computes=frozenset(s.compute for s in steps.values()),
        model_inputs=_model_inputs(inputs),
        registered_outputs=_registered_outputs(outputs),
    )


def _shown(expr: str) -> str:
    return "${{" + expr + "}}"


def _check_parent_binding(
    expr: str,
    where: FieldPath,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    jobs: Mapping[str, Any],
) -> str | None:
    """Validate one ``parent.*`` binding; return the step it depends on, if any."""
    parsed = parent_binding(expr)
    what, rest = parsed if parsed is not None else ("", [])
    if what == "inputs" and len(rest) == 1:
        if rest[0] not in inputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no input {rest[0]!r}")
        return None
    if what == "outputs" and len(rest) == 1:
        if rest[0] not in outputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no output {rest[0]!r}")
        return None
    if what == "jobs" and len(rest) == 3 and rest[1] == "outputs":
        other = jobs.get(rest[0])
        if not isinstance(other, Mapping):
            raise JobSpecError(where, f"{_shown(expr)}: there is no job {rest[0]!r}")
        other_outputs = other.get("outputs")
        if not isinstance(other_outputs, Mapping) or rest[2] not in other_outputs:
            raise JobSpecError(where, f"{_shown(expr)}: job {rest[0]!r} has no output {rest[2]!r}")
        return rest[0]
    raise JobSpecError(
        where,
        f"{_shown(expr)} is not supported here; use ${{{{parent.inputs.X}}}}, "
        "${{parent.outputs.X}} or ${{parent.jobs.STEP.outputs.X}}",
    )


def _check_command_binding(
    expr: str, where: FieldPath, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
) -> None:
    parts = expr.split(".")
    if len(parts) == 2 and parts[0] == "inputs" and parts[1] in inputs:
        return
    if len(parts) == 2 and parts[0] == "outputs" and parts[1] in outputs:
        return
    if len(parts) == 2 and parts[0] in ("inputs", "outputs"):
        raise JobSpecError(
            where, f"{_shown(expr)}: the step declares no {parts[0][:-1]} {parts[1]!r}"
        )
    raise JobSpecError(
        where,
        f"{_shown(expr)} is not supported in a command; "
        "use ${{inputs.X}} or ${{outputs.X}}",
    )


def _toposort(steps: Mapping[str, Step]) -> list[Step]:
    """Kahn's algorithm; ties keep the written order so runs and logs read top to bottom."""
    order: list[Step] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = [n for n in pending if steps[n].depends_on <= done]
        if not ready:
            cycle = " -> ".join(_find_cycle(steps, pending))
            raise JobSpecError(("jobs",), f"the jobs depend on each other in a cycle: {cycle}")
        for name in ready:
            order.append(steps[name])
            done.add(name)
        pending = [n for n in pending if n not in done]
    return order


def _find_cycle(steps: Mapping[str, Step], pending: list[str]) -> list[str]:
    path = [pending[0]]
    while True:
        nxt = sorted(d for d in steps[path[-1]].depends_on if d in pending)[0]
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)


def _steps(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(job.get("jobs"))


def compute_fields(job: Mapping[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """Every compute the job names, with where (inside the job) it is written."""
    default = mapping(job.get("settings")).get("default_compute")
    if isinstance(default, str):
        yield ("settings", "default_compute"), default
    if isinstance(job.get("compute"), str):
        yield ("compute",), job["compute"]
    for step, body in _steps(job).items():
        if isinstance(body, Mapping) and isinstance(body.get("compute"), str):
            yield ("jobs", step, "compute"), body["compute"]


def _model_inputs(inputs: Mapping[str, Any]) -> dict[str, ModelRef]:
    """The pipeline's inputs that are registered models: input name -> reference."""
    out: dict[str, ModelRef] = {}
    for name, value in inputs.items():
        if isinstance(value, Mapping) and isinstance(value.get("path"), str):
            ref = parse_model_ref(value["path"])
            if ref is not None:
                out[str(name)] = ref
    return out


def _registered_outputs(outputs: Mapping[str, Any]) -> dict[str, ModelRef]:
    """Pipeline outputs that register a model when the run completes: output -> name/version."""
    out: dict[str, ModelRef] = {}
    for name, value in outputs.items():
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            version = value.get("version")
            out[str(name)] = ModelRef(value["name"], str(version) if version is not None else None)
    return out


def literal(value: Any) -> str | None:
    """A literal input's value as the command line gets it; None when it is not a literal."""
    if isinstance(value, bool):
        return "True" if value else "False"  # what Azure ML passes for a boolean input
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, Mapping) and "path" not in value:
        for key in ("value", "default"):
            if key in value:
                return literal(value[key])
    return None


# -- the spec: what the reconcilers read -----------------------------------------------------


@dataclass(frozen=True)
class PipelineSpec:
    """A Pipeline spec as the reconcilers read it."""

    job: Mapping[str, Any]  # as written
    graph: JobGraph | None  # None: the job cannot run (a finding says why)
    # the local files the job names (code folders, input data), by their path inside the job,
    # as written: relative to the manifest's file
    local_files: tuple[tuple[FieldPath, str], ...] = ()
    cron: str | None = None
    time_zone: str = "UTC"
    run_on_change: bool = True
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


def _local_files(job: Mapping[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    def local(where: FieldPath, value: Any) -> Iterator[tuple[FieldPath, str]]:
        if isinstance(value, str) and is_local(value) and "${{" not in value:
            yield where, value

    for input_name, value in mapping(job.get("inputs")).items():
        yield from local(("inputs", input_name, "path"), mapping(value).get("path"))
    for step_name, step in _steps(job).items():
        if not isinstance(step, Mapping):
            continue
        yield from local(("jobs", step_name, "code"), step.get("code"))
        for input_name, value in mapping(step.get("inputs")).items():
            yield from local(
                ("jobs", step_name, "inputs", input_name, "path"), mapping(value).get("path")
            )


def _schedule_problems(cron: str | None, time_zone: str) -> Iterator[tuple[FieldPath, str]]:
    """A schedule the reconciler cannot compute its next run from: the field and what to
    write there (croniter and the IANA database decide, as they do when it runs)."""
    if cron is not None and not croniter.is_valid(cron):
        yield (
            ("spec", "schedule", "cron"),
            f"{cron!r} is not a cron expression; write five fields such as '0 3 * * 1'",
        )
    try:
        ZoneInfo(time_zone)
    except (ValueError, ZoneInfoNotFoundError):
        yield (
            ("spec", "schedule", "timeZone"),
            f"{time_zone!r} is not a time zone; write an IANA name such as UTC or Europe/Berlin",
        )


def _read(
    job: Mapping[str, Any], cron: str | None, time_zone: str
) -> tuple[JobGraph | None, list[tuple[FieldPath, str]]]:
    """The job's graph (None: it cannot run) and what keeps the spec from running, each as
    its field and what to write there: what ``parse`` and the reference checks report."""
    problems: list[tuple[FieldPath, str]] = []
    graph: JobGraph | None = None
    try:
        graph = parse_job(job)
    except JobSpecError as exc:
        problems.append(((*JOB, *exc.field), exc.message))
    problems.extend(_schedule_problems(cron, time_zone))
    return graph, problems


def _schedule(spec: Mapping[str, Any]) -> tuple[str | None, str]:
    schedule = mapping(spec.get("schedule"))
    return (
        str(schedule["cron"]) if "cron" in schedule else None,
        str(schedule.get("timeZone", "UTC")),
    )


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[PipelineSpec | None, list[Finding]]:
    """Read a Pipeline spec once. Without a job it is None; a job that cannot run (or a
    schedule that cannot fire) comes with its finding (and, for the job, no graph), so the
    pipeline still reports its runs."""
    job = spec.get("job")
    if not isinstance(job, Mapping):
        return None, [spec_finding(locator, "Pipeline", JOB, "write the pipeline job here")]
    cron, time_zone = _schedule(spec)
    graph, problems = _read(job, cron, time_zone)
    findings = [spec_finding(locator, "Pipeline", path, message) for path, message in problems]
    return PipelineSpec(
        job=job,
        graph=graph,
        local_files=tuple(_local_files(job)),
        cron=cron,
        time_zone=time_zone,
        run_on_change=bool(spec.get("runOnChange", True)),
        lifecycle=Lifecycle.of(spec),
    ), findings


# -- the kind: what a Pipeline manifest declares and references -------------------------------


def _job(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(spec.get("job"))


def _declare(m: Manifest, declared: Declared) -> None:
    """Outputs of a model type with a name register that model: deployments may name it."""
    for out in mapping(_job(m.spec).get("outputs")).values():
        if (
            isinstance(out, Mapping)
            and out.get("type") in MODEL_TYPES
            and isinstance(out.get("name"), str)
        ):
            Declared.add(
                declared.models, m.workspace or "", out["name"], str(out.get("version", ""))
            )


def _models(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for name, value in mapping(_job(spec).get("inputs")).items():
        if (
            isinstance(value, Mapping)
            and value.get("type") in MODEL_TYPES
            and isinstance(value.get("path"), str)
        ):
            yield (*JOB, "inputs", name, "path"), value["path"]


def _environments(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for step, body in _steps(_job(spec)).items():
        if isinstance(body, Mapping) and "environment" in body:
            yield (*JOB, "jobs", step, "environment"), body["environment"]


def _references(m: Manifest, declared: Declared) -> Iterator[Finding]:
    yield from check_workspace(m, declared)
    yield from check_assets(m, declared, KIND)
    ws = m.workspace or ""
    job = _job(m.spec)
    for path, value in compute_fields(job):
        name = compute_name(value)
        if name != "serverless" and (ws, name) not in declared.computes:
            yield m.finding(
                (*JOB, *path),
                "ref.compute",
                f"compute {name!r} is not a ComputeCluster of workspace {ws!r}",
            )
    bindings_found = list(_check_bindings(m, job))
    yield from bindings_found
    # What the reconciler refuses, validate reports: whatever validate accepts, ``up`` runs.
    # A binding to something missing is reported once, by its ref.binding finding.
    if not isinstance(m.spec.get("job"), Mapping):
        return  # the schema's finding
    covered = {(f.file, f.line) for f in bindings_found}
    for path, message in _read(job, *_schedule(m.spec))[1]:
        finding = m.finding(path, RULE_SPEC, message)
        if (finding.file, finding.line) not in covered:
            yield finding


def _check_bindings(m: Manifest, job: Mapping[str, Any]) -> Iterator[Finding]:
    """Every ``parent.`` binding in a step that names a missing input, output or step."""
    if not isinstance(m.spec.get("job"), dict):
        return
    steps = _steps(job)
    inputs, outputs = mapping(job.get("inputs")), mapping(job.get("outputs"))
    for path, text in _strings((*JOB, "jobs"), steps):
        for expr in BINDING_RE.findall(text):
            parsed = parent_binding(expr)
            if parsed is None:
                continue
            what, rest = parsed
            if what == "inputs" and rest[0] not in inputs:
                yield m.finding(path, "ref.binding", f"pipeline has no input {rest[0]!r}")
            elif what == "outputs" and rest[0] not in outputs:
                yield m.finding(path, "ref.binding", f"pipeline has no output {rest[0]!r}")
            elif what == "jobs":
                step = steps.get(rest[0])
                if not isinstance(step, dict):
                    yield m.finding(path, "ref.binding", f"pipeline has no step {rest[0]!r}")
                elif (
                    len(rest) >= 3
                    and rest[1] == "outputs"
                    and rest[2] not in mapping(step.get("outputs"))
                ):
                    yield m.finding(
                        path, "ref.binding", f"step {rest[0]!r} has no output {rest[2]!r}"
                    )


def _strings(prefix: FieldPath, value: Any) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings((*prefix, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings((*prefix, i), item)


KIND = Kind(
    name="Pipeline",
    engine="operator",
    crd=Crd(
        plural="pipelines",
        short_names=("amlpipeline", "amlpipe"),
        columns=(
            {"name": "Run", "type": "string", "jsonPath": ".status.runId"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ),
    ),
    parts=(Part("job", "load_job", cli_type="pipeline_job"),),
    declare=_declare,
    references=_references,
    models=_models,
    environments=_environments,
)
