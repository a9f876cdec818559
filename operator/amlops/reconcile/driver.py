"""Observe, decide, act: runs the pure reconcilers against a Backend.

The one module of the reconcile package that does I/O, and only through the ``Backend``
protocol (plus digesting the local files a spec points at). Both drivers use it through
``amlops.reconcile.registry``: ``amlops up`` (``amlops.reconcile.tree``) and the Kopf handlers
call ``reconcile_model`` / ``reconcile_pipeline`` / ``reconcile_endpoint`` here with the
object's desired state and previous status and write the returned status.

A backend error never escapes as a traceback: it becomes the object's condition message
(Stalled when the backend refused the request, Reconciling with a retry for anything else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from amlops.backends.base import Backend, BackendError, ModelRef, ModelVersion
from amlops.core.digest import tree_digest
from amlops.reconcile import endpoint as endpoint_kind
from amlops.reconcile import model as model_kind
from amlops.reconcile import pipeline as pipeline_kind
from amlops.reconcile.actions import (
    Action,
    CancelPipelineRun,
    CreateOrUpdateDeployment,
    CreateOrUpdateEndpoint,
    DeleteDeployment,
    DeleteEndpoint,
    DeleteModelVersion,
    RegisterModel,
    Result,
    SubmitPipelineRun,
)
from amlops.reconcile.conditions import Outcome, Phase, build_status

ERROR_RETRY_S = 5.0
# Actions whose effect is visible at once (a registration): observe again in the same call,
# so one reconcile both acts and reports the result. Bounded: a backend that never converges
# must not loop here.
_MAX_ROUNDS = 3

Desired = TypeVar(
    "Desired",
    model_kind.ModelDesired,
    pipeline_kind.PipelineDesired,
    endpoint_kind.EndpointDesired,
)


def digest_or_none(path: Path) -> str | None:
    try:
        return tree_digest(path)
    except FileNotFoundError:
        return None


def _model(backend: Backend, workspace: str, ref: ModelRef) -> ModelVersion | None:
    if ref.version is None:
        return backend.latest_model_version(workspace, ref.name)
    return backend.get_model_version(workspace, ref.name, ref.version)


# -- observing ------------------------------------------------------------------------------


def observe_model(backend: Backend, desired: model_kind.ModelDesired) -> model_kind.ModelObserved:
    spec = desired.spec
    registered = (
        backend.get_model_version(desired.workspace, spec.name, spec.version)
        if spec.version is not None
        else backend.latest_model_version(desired.workspace, spec.name)
    )
    return model_kind.ModelObserved(digest_or_none(spec.path), registered)


def observe_pipeline(
    backend: Backend, desired: pipeline_kind.PipelineDesired
) -> pipeline_kind.PipelineObserved:
    # A job that cannot run needs nothing observed: the reconciler stalls on it first.
    graph = desired.graph
    return pipeline_kind.PipelineObserved(
        computes={
            name: backend.get_compute(desired.workspace, name)
            for name in sorted(graph.computes if graph else ())
        },
        models={
            name: _model(backend, desired.workspace, ref)
            for name, ref in (graph.model_inputs if graph else {}).items()
        },
        local_digests={label: digest_or_none(path) for label, path in desired.local_paths.items()},
        latest_run=backend.latest_pipeline_run(desired.workspace, desired.name),
    )


def observe_endpoint(
    backend: Backend, desired: endpoint_kind.EndpointDesired
) -> endpoint_kind.EndpointObserved:
    endpoint = backend.get_endpoint(desired.workspace, desired.name)
    deployments = (
        {d.name: d for d in backend.list_deployments(desired.workspace, desired.name)}
        if endpoint is not None
        else {}
    )
    return endpoint_kind.EndpointObserved(
        endpoint=endpoint,
        deployments=deployments,
        models={
            d.name: _model(backend, desired.workspace, d.model)
            for d in desired.deployments
            if d.model is not None
        },
        code_digests={
            d.name: digest_or_none(d.code_dir) for d in desired.deployments if d.code_dir
        },
    )


# -- acting ---------------------------------------------------------------------------------


def execute(backend: Backend, action: Action) -> None:
    """Carry out one action; raises BackendError (or anything the backend raises)."""
    match action:
        case RegisterModel(workspace, spec):
            backend.create_or_update_model_version(workspace, spec)
        case DeleteModelVersion(workspace, name, version):
            backend.delete_model_version(workspace, name, version)
        case SubmitPipelineRun(spec):
            backend.submit_pipeline_run(spec)
        case CancelPipelineRun(workspace, run_id):
            backend.cancel_pipeline_run(workspace, run_id)
        case CreateOrUpdateEndpoint(spec):
            backend.create_or_update_endpoint(spec)
        case DeleteEndpoint(workspace, name):
            backend.delete_endpoint(workspace, name)
        case CreateOrUpdateDeployment(spec):
            backend.create_or_update_deployment(spec)
        case DeleteDeployment(workspace, endpoint, name):
            backend.delete_deployment(workspace, endpoint, name)


def _error_result(
    exc: Exception,
    action: Action | None,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    doing = f"{action.describe()}: " if action is not None else ""
    if isinstance(exc, BackendError):
        outcome = Outcome(Phase.STALLED, "BackendRefused", f"{doing}{exc}")
        retry = None
    else:
        outcome = Outcome(
            Phase.RECONCILING,
            "RetryingAfterError",
            f"{doing}{type(exc).__name__}: {exc}; retrying in {ERROR_RETRY_S:g} s",
        )
        retry = ERROR_RETRY_S
    kept = {k: v for k, v in (previous or {}).items() if k not in ("conditions",)}
    status = build_status(outcome, generation, previous, now, **kept)
    return Result((), status, outcome, retry)


def _run(
    backend: Backend,
    desired: Desired,
    previous: Mapping[str, Any] | None,
    now: datetime | None,
    observe: Callable[[Backend, Desired], Any],
    decide: Callable[[Desired, Any, Mapping[str, Any] | None, datetime], Result],
) -> Result:
    when = now or datetime.now(UTC)
    status = previous
    result: Result | None = None
    for _ in range(_MAX_ROUNDS):
        action: Action | None = None
        try:
            result = decide(desired, observe(backend, desired), status, when)
            for action in result.actions:
                execute(backend, action)
        except Exception as exc:  # every failure becomes a condition, never a traceback
            return _error_result(exc, action, desired.generation, status, when)
        if not result.actions:
            return result
        status = result.status
    assert result is not None
    return result


def reconcile_model(
    backend: Backend,
    desired: model_kind.ModelDesired,
    previous: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> Result:
    return _run(backend, desired, previous, now, observe_model, model_kind.reconcile_model)


def reconcile_pipeline(
    backend: Backend,
    desired: pipeline_kind.PipelineDesired,
    previous: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> Result:
    return _run(backend, desired, previous, now, observe_pipeline, pipeline_kind.reconcile_pipeline)


def reconcile_endpoint(
    backend: Backend,
    desired: endpoint_kind.EndpointDesired,
    previous: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> Result:
    return _run(backend, desired, previous, now, observe_endpoint, endpoint_kind.reconcile_endpoint)


def finalize(backend: Backend, actions: tuple[Action, ...]) -> str | None:
    """Carry out a finalizer's actions; the error message when one failed."""
    for action in actions:
        try:
            execute(backend, action)
        except Exception as exc:  # reported, and the finalizer is retried
            return f"{action.describe()}: {exc}"
    return None
