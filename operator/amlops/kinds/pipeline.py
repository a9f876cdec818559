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

A step may run a component instead of its own command (``amlops.kinds.component``): its inputs
and outputs are the component's. The job is read with its component files put in place
(``inline_components``), so the graph is the same whether a component is written out or in a
file; a step running a pipeline component becomes that component's steps. A command job and
a single-component pipeline job are graphs too: one job model for the reconcilers and runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from amlops.core import files
from amlops.core.assets import (
    MODEL_TYPES,
    ModelRef,
    compute_name,
    is_local,
    parse_asset_ref,
    parse_model_ref,
)
from amlops.core.findings import Finding, Severity
from amlops.core.locator import Locator, finding_at
from amlops.core.source import Document, FieldPath
from amlops.kinds import base
from amlops.kinds.component import BINDING_RE as BINDING_RE
from amlops.kinds.component import (
    ComponentRef,
    ComponentsDeclared,
    ComponentSpec,
    Inlined,
    LoadComponent,
    NameComponent,
    component_ref,
    inline_components,
    registry_note,
)
from amlops.kinds.component import read as read_component
from amlops.kinds.component import read_file as read_component_file

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

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
    # the component the step runs when it was not put in place (a registry's, an
    # ``azureml:NAME:V`` the repository does not declare, or one read without the repository
    # to look in, as the operator reads it): only Azure ML can run it
    component: str | None = None


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
    """Check the job's structure and bindings; order its steps. Raises JobSpecError.

    A pipeline job's steps are command steps written out, or steps that run a component
    written out (``inline_components`` puts the component files a job names in place). A
    step running a pipeline component becomes that component's steps, named
    ``STEP.INNER``, with its bindings mapped onto the outer pipeline's: one graph of command
    steps, whatever the nesting. A single-component pipeline job (``component:`` at the top)
    is the steps of that component; a command job (``type: command``, or no ``type`` with a
    ``command`` and no ``jobs``: ``job_type``) is one step, ``main``. A step that names no
    compute (nor does the job's ``settings.default_compute``) runs on Azure ML's serverless
    compute (``SERVERLESS``), which is not among the graph's ``computes``.
    A step running a component that was not put in place (a registry's, an ``azureml:`` one
    the repository does not declare or that was read without the repository: ``parse``) keeps
    it in ``Step.component``: only Azure ML can run it.
    """
    kind = job_type(job)
    if kind not in ("pipeline", "command"):
        raise JobSpecError(
            ("type",), "only `type: pipeline` and `type: command` jobs are supported"
        )
    inputs = _mapping(job.get("inputs"), ("inputs",))
    outputs = _mapping(job.get("outputs"), ("outputs",))
    settings = _mapping(job.get("settings"), ("settings",))
    default_compute = settings.get("default_compute") or job.get("compute")
    top = _Level("", inputs, outputs, None, None)
    entries: list[tuple[str, FieldPath, Mapping[str, Any]]]
    if kind == "command":
        entries = [(MAIN_STEP, (), {**job, **_passed_through(inputs, outputs)})]
    elif "jobs" not in job and "component" in job:
        body = {"component": job["component"], **_passed_through(inputs, outputs)}
        entries = [(MAIN_STEP, (), body)]
        top = _Level("", inputs, outputs, None, None, single=True)
    else:
        jobs = _mapping(job.get("jobs"), ("jobs",))
        if not jobs:
            raise JobSpecError(("jobs",), "a pipeline needs at least one job under `jobs`")
        entries = [(str(n), ("jobs", n), _mapping(b, ("jobs", n))) for n, b in jobs.items()]
    builder = _Builder()
    builder.level(top, entries, default_compute)
    steps = builder.finish()
    return JobGraph(
        tuple(_toposort(steps)),
        inputs,
        outputs,
        computes=frozenset(
            s.compute for s in steps.values() if s.compute and s.compute != SERVERLESS
        ),
        model_inputs=_model_inputs(inputs),
        registered_outputs=_registered_outputs(outputs),
    )


def job_type(job: Mapping[str, Any]) -> Any:
    """The job's ``type`` as written; left out, what Azure ML takes it for: a command job when
    it has a ``command`` and no ``jobs`` (``load_job`` defaults to command), else a pipeline."""
    if "type" in job:
        return job["type"]
    return "command" if "command" in job and "jobs" not in job else "pipeline"


MAIN_STEP = "main"  # the step of a command job (and of a single-component pipeline job)
# Azure ML's serverless compute: what a step without `compute:` (and without the pipeline's
# `settings.default_compute`) runs on. No ComputeCluster declares it, so no job waits for it.
SERVERLESS = "serverless"


def _passed_through(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The bindings of a job's only step: each of the job's inputs and outputs, as is."""
    return {
        "inputs": {k: _shown(f"parent.inputs.{k}") for k in inputs},
        "outputs": {k: _shown(f"parent.outputs.{k}") for k in outputs},
    }


@dataclass(frozen=True)
class _Level:
    """One level of jobs: the pipeline job itself, or a pipeline component a step runs."""

    prefix: str  # added to its steps' names: "" at the top, "STEP." inside step STEP
    inputs: Mapping[str, Any]  # what ``${{parent.inputs.x}}`` may name here
    outputs: Mapping[str, Any]
    # inside a pipeline component: the value each input takes and what each output is bound
    # to, already in the top level's terms (None: the step's own folder); None at the top
    input_values: Mapping[str, Any] | None
    output_values: Mapping[str, str | None] | None
    single: bool = False  # a single-component pipeline job: its steps keep their names


def _run(
    name: str,
    where: FieldPath,
    body: Mapping[str, Any],
    compute: str,
    command: str,
    code: str | None,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> Step:
    """A step that runs ``command`` (its own, or its command component's) with the step's
    settings (environment variables, timeout) read from ``body``."""
    return Step(
        name=name,
        command=command,
        code=code,
        compute=compute_name(compute),
        inputs=inputs,
        outputs=outputs,
        depends_on=frozenset(),
        environment_variables=_environment_variables(body, where),
        timeout_s=_timeout(body, where),
    )


class _Builder:
    """Collects the command steps of every level, in the top level's terms."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {}
        # (pipeline-component step, its output) -> (the inner step, output) that writes it
        self.aliases: dict[tuple[str, str], tuple[str, str]] = {}
        self.written: dict[str, FieldPath] = {}  # each step's name -> where it is written

    def level(
        self,
        level: _Level,
        entries: list[tuple[str, FieldPath, Mapping[str, Any]]],
        default_compute: Any,
    ) -> None:
        interfaces = {name: _outputs_of(body) for name, _, body in entries}
        for name, where, body in entries:
            self._step(level, name, where, body, interfaces, default_compute)

    def _step(
        self,
        level: _Level,
        name: str,
        where: FieldPath,
        body: Mapping[str, Any],
        interfaces: Mapping[str, frozenset[str] | None],
        default_compute: Any,
    ) -> None:
        step_inputs = _mapping(body.get("inputs"), (*where, "inputs"))
        step_outputs = _mapping(body.get("outputs"), (*where, "outputs"))
        for what, values in (("inputs", step_inputs), ("outputs", step_outputs)):
            for key, value in values.items():
                for expr in bindings(value):
                    _check_parent_binding(
                        expr, (*where, what, key), level.inputs, level.outputs, interfaces
                    )
        # no compute named: Azure ML runs the step on serverless compute
        compute = body.get("compute") or default_compute or SERVERLESS
        component = body.get("component")
        ref = component_ref(component) if component is not None else None
        if ref == ComponentRef.FILE:
            raise JobSpecError(
                (*where, "component"),
                f"the component file {component!r} was not read; read the job through "
                "amlops.kinds.component.inline_components first",
            )
        if ref in (ComponentRef.ASSET, ComponentRef.REGISTRY, ComponentRef.OTHER):
            self._add(
                level,
                name,
                where,
                Step(
                    name=name,
                    command="",
                    code=None,
                    compute=compute_name(compute) if isinstance(compute, str) else "",
                    inputs=step_inputs,
                    outputs=step_outputs,
                    depends_on=frozenset(),
                    component=str(component),
                ),
            )
            return
        if not isinstance(compute, str):
            raise JobSpecError((*where, "compute"), "must be the name of a compute")
        if ref is None:
            self._command(level, name, where, body, step_inputs, step_outputs, compute)
            return
        spec = _component(component, (*where, "component"))
        _check_interface(spec, where, step_inputs, step_outputs)
        if spec.type == "pipeline":
            self._pipeline(level, name, where, spec, step_inputs, step_outputs, compute)
            return
        inputs: dict[str, Any] = {k: v for k, v in spec.inputs.items() if k not in step_inputs}
        inputs.update(step_inputs)
        outputs = {k: step_outputs.get(k, v) for k, v in spec.outputs.items()}
        step = _run(name, where, body, compute, spec.command or "", spec.code, inputs, outputs)
        self._add(level, name, where, step)

    def _command(
        self,
        level: _Level,
        name: str,
        where: FieldPath,
        body: Mapping[str, Any],
        step_inputs: Mapping[str, Any],
        step_outputs: Mapping[str, Any],
        compute: str,
    ) -> None:
        if body.get("type", "command") != "command":
            raise JobSpecError((*where, "type"), "only `type: command` steps are supported")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise JobSpecError((*where, "command"), "a command step needs a `command`")
        for expr in BINDING_RE.findall(command):
            _check_command_binding(expr, (*where, "command"), step_inputs, step_outputs)
        code = body.get("code") if isinstance(body.get("code"), str) else None
        step = _run(name, where, body, compute, command, code, step_inputs, step_outputs)
        self._add(level, name, where, step)

    def _pipeline(
        self,
        level: _Level,
        name: str,
        where: FieldPath,
        spec: ComponentSpec,
        step_inputs: Mapping[str, Any],
        step_outputs: Mapping[str, Any],
        compute: str,
    ) -> None:
        """The steps of the pipeline component ``spec`` that step ``name`` runs."""
        values: dict[str, Any] = {
            k: literal(decl) if "default" in decl else None for k, decl in spec.inputs.items()
        }
        values.update({k: _global(v, level) for k, v in step_inputs.items()})
        bound: dict[str, str | None] = {}
        for key in spec.outputs:
            value = step_outputs.get(key)
            parsed = _whole_binding(value)
            if parsed is None or parsed[0] != "outputs":
                bound[key] = None  # the inner step's own folder
            elif level.output_values is None:
                bound[key] = str(value)  # the pipeline job's output
            else:
                bound[key] = level.output_values.get(parsed[1][0])
                if bound[key] is None:  # the outer component's output is this one
                    self.aliases[(level.prefix, parsed[1][0])] = (f"{level.prefix}{name}", key)
        prefix = level.prefix if level.single else f"{level.prefix}{name}."
        inner_where: FieldPath = (*where, "component", "jobs")
        inner = _Level(prefix, spec.inputs, spec.outputs, values, bound)
        entries = [
            (str(n), (*inner_where, n), _mapping(b, (*inner_where, n)))
            for n, b in spec.jobs.items()
        ]
        self.level(inner, entries, compute)

    def _add(self, level: _Level, name: str, where: FieldPath, step: Step) -> None:
        """Add ``step`` (written at ``where``, in ``level``) in the top level's terms."""
        full = f"{level.prefix}{name}"
        if full in self.steps:
            raise JobSpecError(
                where, f"two steps are named {full!r} once nested pipelines are expanded"
            )
        self.written[full] = where
        outputs: dict[str, Any] = {}
        for key, value in step.outputs.items():
            parsed = _whole_binding(value)
            if parsed is not None and level.output_values is not None:
                what, rest = parsed
                target = level.output_values.get(rest[0]) if what == "outputs" else None
                if target is None:
                    # the step's own folder, which the component's output names
                    self.aliases[(level.prefix, rest[0])] = (full, str(key))
                    outputs[str(key)] = {"type": "uri_folder"}
                else:
                    outputs[str(key)] = target
            else:
                outputs[str(key)] = value
        self.steps[full] = Step(
            name=full,
            command=step.command,
            code=step.code,
            compute=step.compute,
            inputs={k: _global(v, level) for k, v in step.inputs.items()},
            outputs=outputs,
            depends_on=frozenset(),
            environment_variables=step.environment_variables,
            timeout_s=step.timeout_s,
            component=step.component,
        )

    def finish(self) -> dict[str, Step]:
        """Point bindings to a pipeline component's outputs at the steps that write them, and
        work out what each step depends on."""
        out: dict[str, Step] = {}
        for name, step in self.steps.items():
            inputs = {k: self._resolve(v) for k, v in step.inputs.items()}
            for key, value in inputs.items():
                for expr in bindings(value):
                    job = _job_of(expr)
                    if job is not None and job not in self.steps:
                        output = expr.rpartition(".outputs.")[2]
                        raise JobSpecError(
                            (*self.written[name], "inputs", key),
                            f"{_shown(expr)}: no job of pipeline component {job!r} writes its "
                            f"output {output!r}; bind one to ${{{{parent.outputs.{output}}}}}",
                        )
            depends = {
                dep
                for value in inputs.values()
                for expr in bindings(value)
                if (dep := _job_of(expr)) is not None and dep in self.steps
            }
            out[name] = replace(step, inputs=inputs, depends_on=frozenset(depends))
        return out

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self._resolve(v) for k, v in value.items()}
        if not isinstance(value, str):
            return value

        def follow(match: re.Match[str]) -> str:
            expr = match.group(1)
            for _ in range(len(self.aliases) + 1):
                job = _job_of(expr)
                if job is None:
                    break
                output = expr.rpartition(".outputs.")[2]
                target = self.aliases.get((f"{job}.", output))
                if target is None:
                    break
                expr = f"parent.jobs.{target[0]}.outputs.{target[1]}"
            return _shown(expr)

        return BINDING_RE.sub(follow, value)


def _job_of(expr: str) -> str | None:
    """``parent.jobs.A.B.outputs.x`` -> ``A.B``: the (flattened) step a binding reads."""
    if not expr.startswith("parent.jobs.") or ".outputs." not in expr:
        return None
    return expr.removeprefix("parent.jobs.").rpartition(".outputs.")[0]


def _whole_binding(value: Any) -> tuple[str, list[str]] | None:
    """A value that is exactly one ``${{parent.*}}`` binding, parsed."""
    if not isinstance(value, str):
        return None
    match = BINDING_RE.fullmatch(value.strip())
    return parent_binding(match.group(1)) if match else None


def _global(value: Any, level: _Level) -> Any:
    """``value`` written at ``level`` in the top level's terms: a pipeline component's inputs
    become what its step gives them, its jobs get their flattened names."""
    if isinstance(value, Mapping):
        return {k: _global(v, level) for k, v in value.items()}
    if not isinstance(value, str) or level.input_values is None:
        return value
    whole = _whole_binding(value)
    if whole is not None and whole[0] == "inputs":
        return level.input_values.get(whole[1][0])

    def substitute(match: re.Match[str]) -> str:
        parsed = parent_binding(match.group(1))
        if parsed is None:
            return match.group(0)
        what, rest = parsed
        if what == "inputs":
            given = level.input_values.get(rest[0]) if level.input_values else None
            if isinstance(given, Mapping):
                given = given.get("path", literal(given))
            return "" if given is None else str(given)
        if what == "outputs":
            bound = level.output_values.get(rest[0]) if level.output_values else None
            return bound or match.group(0)
        return _shown(f"parent.jobs.{level.prefix}{'.'.join(rest)}")

    return BINDING_RE.sub(substitute, value)


def _component(value: Any, where: FieldPath) -> ComponentSpec:
    spec, problems = read_component(_mapping(value, where))
    if spec is None:
        path, message = problems[0]
        raise JobSpecError((*where, *path), message)
    return spec


def _check_interface(
    spec: ComponentSpec,
    where: FieldPath,
    step_inputs: Mapping[str, Any],
    step_outputs: Mapping[str, Any],
) -> None:
    """A step gives only inputs its component declares, every required one, and binds only
    outputs it declares (Azure ML refuses the job otherwise)."""
    for what, given, declared in (
        ("inputs", step_inputs, spec.inputs),
        ("outputs", step_outputs, spec.outputs),
    ):
        for key in given:
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise JobSpecError(
                    (*where, what, key),
                    f"the component declares no {what[:-1]} {key!r} (its {what}: {known})",
                )
    for key in spec.required_inputs():
        if key not in step_inputs:
            raise JobSpecError((*where, "inputs"), f"set input {key!r}: the component requires it")


def _outputs_of(body: Mapping[str, Any]) -> frozenset[str] | None:
    """The outputs a step has: its component's (None: not known offline) or its own."""
    component = body.get("component")
    if component is None:
        return frozenset(str(k) for k in base.mapping(body.get("outputs")))
    if component_ref(component) != ComponentRef.INLINE:
        return None
    return frozenset(str(k) for k in base.mapping(component.get("outputs")))


def _environment_variables(body: Mapping[str, Any], where: FieldPath) -> dict[str, str]:
    env = _mapping(body.get("environment_variables"), (*where, "environment_variables"))
    return {str(k): str(v) for k, v in env.items()}


def _timeout(body: Mapping[str, Any], where: FieldPath) -> float | None:
    limits = _mapping(body.get("limits"), (*where, "limits"))
    timeout = limits.get("timeout")
    return float(timeout) if isinstance(timeout, int | float) else None


def _shown(expr: str) -> str:
    return "${{" + expr + "}}"


def _check_parent_binding(
    expr: str,
    where: FieldPath,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    interfaces: Mapping[str, frozenset[str] | None],
) -> None:
    """Validate one ``parent.*`` binding against the level it is written at; ``interfaces``:
    each step's outputs there (None: not known offline, any output is accepted)."""
    parsed = parent_binding(expr)
    what, rest = parsed if parsed is not None else ("", [])
    if what == "inputs" and len(rest) == 1:
        if rest[0] not in inputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no input {rest[0]!r}")
        return
    if what == "outputs" and len(rest) == 1:
        if rest[0] not in outputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no output {rest[0]!r}")
        return
    if what == "jobs" and len(rest) == 3 and rest[1] == "outputs":
        if rest[0] not in interfaces:
            raise JobSpecError(where, f"{_shown(expr)}: there is no job {rest[0]!r}")
        other_outputs = interfaces[rest[0]]
        if other_outputs is not None and rest[2] not in other_outputs:
            raise JobSpecError(where, f"{_shown(expr)}: job {rest[0]!r} has no output {rest[2]!r}")
        return
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
    return base.mapping(job.get("jobs"))


def compute_fields(job: Mapping[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """Every compute the job names, with where (inside the job) it is written."""
    default = base.mapping(job.get("settings")).get("default_compute")
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

    job: Mapping[str, Any]  # as written, with the component files it names put in place
    graph: JobGraph | None  # None: the job cannot run (a finding says why)
    # the local files the job names (code folders, input data), by their path inside the job,
    # as written: relative to the manifest's file
    local_files: tuple[tuple[FieldPath, str], ...] = ()
    cron: str | None = None
    time_zone: str = "UTC"
    run_on_change: bool = True
    lifecycle: base.Lifecycle = field(default_factory=base.Lifecycle)


def _local_files(job: Mapping[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """The local files the job names: its inputs', and each step's code and inputs', also
    those of the components put in place (``inline_components``), at any depth."""

    def local(where: FieldPath, value: Any) -> Iterator[tuple[FieldPath, str]]:
        if isinstance(value, str) and is_local(value) and "${{" not in value:
            yield where, value

    def steps(where: FieldPath, body: Mapping[str, Any]) -> Iterator[tuple[FieldPath, str]]:
        yield from local((*where, "code"), body.get("code"))
        for input_name, value in base.mapping(body.get("inputs")).items():
            yield from local(
                (*where, "inputs", input_name, "path"), base.mapping(value).get("path")
            )
        component = body.get("component")
        if isinstance(component, Mapping):
            yield from steps((*where, "component"), component)
        for step_name, step in base.mapping(body.get("jobs")).items():
            if isinstance(step, Mapping):
                yield from steps((*where, "jobs", step_name), step)

    for input_name, value in base.mapping(job.get("inputs")).items():
        yield from local(("inputs", input_name, "path"), base.mapping(value).get("path"))
    if job_type(job) == "command":
        yield from local(("code",), job.get("code"))
        return
    component = job.get("component")
    if isinstance(component, Mapping):
        yield from steps(("component",), component)
    for step_name, step in _steps(job).items():
        if isinstance(step, Mapping):
            yield from steps(("jobs", step_name), step)


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
    schedule = base.mapping(spec.get("schedule"))
    return (
        str(schedule["cron"]) if "cron" in schedule else None,
        str(schedule.get("timeZone", "UTC")),
    )


def parse(
    spec: Mapping[str, Any],
    locator: Locator,
    load: LoadComponent | None = None,
    named: NameComponent | None = None,
) -> tuple[PipelineSpec | None, list[Finding]]:
    """Read a Pipeline spec once. Without a job it is None; a job that cannot run (or a
    schedule that cannot fire) comes with its finding (and, for the job, no graph), so the
    pipeline still reports its runs. ``load`` reads the component files the job names
    (``inline_components``); without it a job naming one cannot run. ``named`` finds the
    repository's Components its ``azureml:`` steps name, put in place as files are; without
    it (or for a name the repository does not declare) the step keeps the reference
    (``Step.component``)."""
    job = spec.get("job")
    if not isinstance(job, Mapping):
        return None, [base.spec_finding(locator, "Pipeline", JOB, "write the pipeline job here")]
    inlined = inline_components(job, load, named) if load is not None else Inlined(job)
    cron, time_zone = _schedule(spec)
    graph, problems = _read(inlined.job, cron, time_zone)
    at = _in_job(partial(finding_at, locator, kind="Pipeline"), inlined)
    findings = [
        at((*JOB, *where), base.RULE_SPEC, message, Severity.ERROR)
        for where, _, message in inlined.problems
    ]
    findings += [at(path, base.RULE_SPEC, message, Severity.ERROR) for path, message in problems]
    return PipelineSpec(
        job=inlined.job,
        graph=graph,
        local_files=tuple(_local_files(inlined.job)),
        cron=cron,
        time_zone=time_zone,
        run_on_change=bool(spec.get("runOnChange", True)),
        lifecycle=base.Lifecycle.of(spec),
    ), findings


# Where a finding goes: ``Manifest.finding`` (it names the object, and the field as written),
# or with only a locator ``finding_at``.
_Place = Callable[[FieldPath, str, str, Severity], Finding]


def _in_job(place: _Place, inlined: Inlined, name: str | None = None) -> _Place:
    """``place`` for the fields of ``spec.job``: one written in a component file is found in
    that file (about the object ``name``), any other where ``place`` puts it."""

    def at(path: FieldPath, rule: str, message: str, severity: Severity) -> Finding:
        origin = inlined.origin(path[len(JOB) :]) if path[: len(JOB)] == JOB else None
        if origin is None:
            return place(path, rule, message, severity)
        found = finding_at(origin[0], origin[1], rule, message, severity, kind="Pipeline")
        return replace(found, name=name)

    return at


# -- the kind: what a Pipeline manifest declares and references -------------------------------


def _job(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return base.mapping(spec.get("job"))


def _declare(m: Manifest, declared: base.Declared) -> None:
    """Outputs of a model type with a name register that model: deployments may name it."""
    for out in base.mapping(_job(m.spec).get("outputs")).values():
        if (
            isinstance(out, Mapping)
            and out.get("type") in MODEL_TYPES
            and isinstance(out.get("name"), str)
        ):
            base.Declared.add(
                declared.models, m.workspace or "", out["name"], str(out.get("version", ""))
            )


def _models(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for name, value in base.mapping(_job(spec).get("inputs")).items():
        if (
            isinstance(value, Mapping)
            and value.get("type") in MODEL_TYPES
            and isinstance(value.get("path"), str)
        ):
            yield (*JOB, "inputs", name, "path"), value["path"]


def _environments(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    job = _job(spec)
    if job_type(job) == "command" and "environment" in job:
        yield (*JOB, "environment"), job["environment"]
    for step, body in _steps(job).items():
        if isinstance(body, Mapping) and "environment" in body:
            yield (*JOB, "jobs", step, "environment"), body["environment"]


def _references(m: Manifest, declared: base.Declared) -> Iterator[Finding]:
    yield from base.check_workspace(m, declared)
    yield from base.check_assets(m, declared, KIND)
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
    if not isinstance(m.spec.get("job"), Mapping):
        return  # the schema's finding
    # the repository's Components its ``azureml:`` steps name are put in place as files are
    named = declared.repository.naming(m, JOB) if isinstance(declared, ComponentsDeclared) else None
    inlined = inline_components(job, _component_files(m), named)
    at = _in_job(m.finding, inlined, m.name)
    covered: set[tuple[str, int]] = set()
    for where, rule, message in inlined.problems:
        finding = at((*JOB, *where), rule, message, Severity.ERROR)
        covered.add((finding.file, finding.line))
        # a file the manifest itself names is checked with its other files (refs.check_files)
        if inlined.origin(where[:-1]) is not None or rule not in _FILE_RULES:
            yield finding
    yield from _component_paths(m, inlined)
    checked, found = _named_components(m, inlined, declared)
    yield from found
    bindings_found = list(_check_bindings(m, job, checked))
    yield from bindings_found
    # What the reconciler refuses, validate reports: whatever validate accepts, ``up`` runs.
    # A binding to something missing is reported once, by its ref.binding finding.
    covered |= {(f.file, f.line) for f in bindings_found}
    for path, message in _read(checked, *_schedule(m.spec))[1]:
        finding = at(path, base.RULE_SPEC, message, Severity.ERROR)
        if (finding.file, finding.line) not in covered:
            yield finding


_FILE_RULES = (*files.RULES, "ref.missing-file")
RULE_COMPONENT = "ref.component"
RULE_UNCHECKED = "ref.component-unchecked"


def _component_paths(m: Manifest, inlined: Inlined) -> Iterator[Finding]:
    """The files the component files name (``code``, input paths), checked as the manifest's
    own are (``refs.check_files``): inside the source root, regular, within the limits."""
    checker = files.Checker()
    for where, _ in _local_files(inlined.job):
        origin = inlined.origin(where)
        if origin is None:
            continue
        doc, inside = origin
        written: Any = doc.data
        for key in inside:
            written = written.get(key) if isinstance(written, Mapping) else None
        if not isinstance(written, str):
            continue
        verdict = checker.check(doc.file, doc.root, written)
        field_name = str(inside[-1])
        if verdict.problem is not None:
            rule, message = verdict.problem.rule, f"{field_name}: {verdict.problem}"
        elif not verdict.exists:
            rule = "ref.missing-file"
            message = (
                f"{field_name}: {written!r} does not exist (resolved to {verdict.resolved}); "
                "paths are relative to the file that names them"
            )
        else:
            continue
        yield replace(finding_at(doc, inside, rule, message, kind="Pipeline"), name=m.name)


def _component_files(m: Manifest) -> LoadComponent:
    """Component files named in ``m``'s job, read under its source root."""

    def load(named: str) -> Document:
        return read_component_file(m.resolve_path(JOB, named), m.source_root(JOB))

    return load


def _named_components(
    m: Manifest, inlined: Inlined, declared: base.Declared
) -> tuple[Mapping[str, Any], list[Finding]]:
    """The job as the checks read it (the repository's Components already put in place by
    ``inline_components``), and a finding for every component named that the repository does
    not hold: an error when nothing declares it, a note when it is in a registry or listed
    under ``external.components`` (its bindings are not checked)."""
    findings: list[Finding] = []
    at = _in_job(m.finding, inlined, m.name)
    ws = m.workspace or ""

    def note(value: str) -> tuple[str, str, Severity] | None:
        """What to say about the component ``value`` names; None: nothing."""
        ref = component_ref(value)
        if ref == ComponentRef.REGISTRY:
            return RULE_UNCHECKED, registry_note(value), Severity.WARNING
        if ref != ComponentRef.ASSET or not isinstance(declared, ComponentsDeclared):
            return None
        name, version = _name_version(value)
        if declared.external.has("components", name, version):
            return (
                RULE_UNCHECKED,
                f"component {value!r} is listed under `external.components` in amlops.yaml: "
                "its inputs and outputs are not known here, so the bindings to it are not "
                "checked",
                Severity.WARNING,
            )
        return (
            RULE_COMPONENT,
            f"component {value.removeprefix('azureml:')!r} is not declared in workspace "
            f"{ws!r}; add a Component manifest (or a component file with its $schema), name "
            "the file (`component: ./train.yml`), or list it under `external.components` in "
            "amlops.yaml",
            Severity.ERROR,
        )

    def visit(body: Any, where: FieldPath) -> None:
        if not isinstance(body, Mapping):
            return
        value = body.get("component")
        said = note(value) if isinstance(value, str) else None
        if said is not None:
            rule, message, severity = said
            path: FieldPath = (*JOB, *where, "component")
            findings.append(at(path, rule, message, severity))
        if isinstance(value, Mapping):
            visit(value, (*where, "component"))
        for name, step in base.mapping(body.get("jobs")).items():
            visit(step, (*where, "jobs", name))

    visit(inlined.job, ())
    return inlined.job, findings


def _name_version(value: str) -> tuple[str, str | None]:
    ref = parse_asset_ref(value)
    return (ref.name, ref.version) if ref is not None else (value, None)


def _check_bindings(
    m: Manifest, job: Mapping[str, Any], checked: Mapping[str, Any]
) -> Iterator[Finding]:
    """Every ``parent.`` binding in a step of ``job`` (as written) that names a missing input,
    output or step; a step's outputs are its component's (``checked``: the job with its
    components put in place), when they are known."""
    steps = _steps(job)
    interfaces = {
        name: _outputs_of(body)
        for name, body in _steps(checked).items()
        if isinstance(body, Mapping)
    }
    inputs, outputs = base.mapping(job.get("inputs")), base.mapping(job.get("outputs"))
    for name, body in steps.items():
        written = {k: v for k, v in base.mapping(body).items() if k != "component"}
        for path, text in _strings((*JOB, "jobs", name), written):
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
                    if rest[0] not in interfaces:
                        yield m.finding(path, "ref.binding", f"pipeline has no step {rest[0]!r}")
                        continue
                    known = interfaces[rest[0]]
                    if (
                        known is not None
                        and len(rest) >= 3
                        and rest[1] == "outputs"
                        and (rest[2] not in known)
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


KIND = base.Kind(
    name="Pipeline",
    engine="operator",
    crd=base.Crd(
        short_names=("amlpipeline", "amlpipe"),
        columns=(
            base.Column("Run", ".status.runId"),
            base.Column("Phase", ".status.phase"),
        ),
    ),
    parts=(base.Part("job", "load_job", cli_type="pipeline_job"),),
    declare=_declare,
    references=_references,
    models=_models,
    environments=_environments,
)
