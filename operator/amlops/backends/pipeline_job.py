"""Azure ML CLI v2 pipeline jobs as a graph: steps, their bindings and the order they run in.

Pure functions on the job YAML. The reconcile core uses them to check a spec (a cycle or a
binding to a step that does not exist is a spec error naming the field) and to find what a
pipeline depends on (computes, model inputs); the local runner uses them to run it.

Binding expressions (``${{...}}``) supported, as Azure ML defines them:

* in a step's ``command``: ``${{inputs.x}}`` and ``${{outputs.y}}`` of that step;
* in a step's ``inputs``/``outputs``: ``${{parent.inputs.x}}``, ``${{parent.outputs.x}}`` and
  ``${{parent.jobs.a.outputs.b}}`` (which also makes the step depend on step ``a``);
* ``$[[ ... ]]`` around part of a command makes it optional: it is dropped when an input it
  names was not given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amlops.backends.base import ModelRef
from amlops.core.refs import compute_name, parse_asset_ref

BINDING_RE = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
OPTIONAL_RE = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
PATH_TYPES = ("uri_folder", "uri_file", "mltable", *MODEL_TYPES)

FieldPath = tuple[str | int, ...]


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

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def parse_model_ref(value: str) -> ModelRef | None:
    """``azureml:name:version`` / ``azureml:name@latest`` -> ModelRef; None for anything else."""
    ref = parse_asset_ref(value)
    if ref is None or ref.label not in (None, "latest"):
        return None
    return ModelRef(ref.name, ref.version)


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
    return JobGraph(tuple(_toposort(steps)), inputs, outputs)


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
    parts = expr.split(".")
    if parts[:2] == ["parent", "inputs"] and len(parts) == 3:
        if parts[2] not in inputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no input {parts[2]!r}")
        return None
    if parts[:2] == ["parent", "outputs"] and len(parts) == 3:
        if parts[2] not in outputs:
            raise JobSpecError(where, f"{_shown(expr)}: the pipeline has no output {parts[2]!r}")
        return None
    if parts[:2] == ["parent", "jobs"] and len(parts) == 5 and parts[3] == "outputs":
        other = jobs.get(parts[2])
        if not isinstance(other, Mapping):
            raise JobSpecError(where, f"{_shown(expr)}: there is no job {parts[2]!r}")
        other_outputs = other.get("outputs")
        if not isinstance(other_outputs, Mapping) or parts[4] not in other_outputs:
            raise JobSpecError(
                where, f"{_shown(expr)}: job {parts[2]!r} has no output {parts[4]!r}"
            )
        return parts[2]
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


def computes(job: Mapping[str, Any]) -> set[str]:
    """Every compute the job would run on (without the ``azureml:`` prefix)."""
    out: set[str] = set()
    settings = job.get("settings") if isinstance(job.get("settings"), Mapping) else {}
    default = (settings or {}).get("default_compute") or job.get("compute")
    jobs = job.get("jobs") if isinstance(job.get("jobs"), Mapping) else {}
    for body in (jobs or {}).values():
        if isinstance(body, Mapping):
            compute = body.get("compute") or default
            if isinstance(compute, str):
                out.add(compute_name(compute))
    return out


def model_inputs(job: Mapping[str, Any]) -> dict[str, ModelRef]:
    """The pipeline's inputs that are registered models: input name -> reference."""
    inputs = job.get("inputs") if isinstance(job.get("inputs"), Mapping) else {}
    out: dict[str, ModelRef] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, Mapping) and isinstance(value.get("path"), str):
            ref = parse_model_ref(value["path"])
            if ref is not None:
                out[str(name)] = ref
    return out


def registered_outputs(job: Mapping[str, Any]) -> dict[str, ModelRef]:
    """Pipeline outputs that register a model when the run completes: output -> name/version."""
    outputs = job.get("outputs") if isinstance(job.get("outputs"), Mapping) else {}
    out: dict[str, ModelRef] = {}
    for name, value in (outputs or {}).items():
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
