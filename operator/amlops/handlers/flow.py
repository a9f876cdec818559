"""The path every handler takes: custom resource -> reconcile core -> one status patch, an
Event on a transition, metrics, and Kopf's retry semantics.

* Stalled (the spec or the backend needs a person): ``kopf.PermanentError`` - no retries until
  the spec changes; the drift timer still looks now and then.
* Reconciling with a requeue (work in progress, a dependency not ready, a transient error):
  ``kopf.TemporaryError`` with exponential backoff from the core's hint.
* Status is only ever written through Kopf's ``patch``, and only the fields that changed, so
  Kopf sends one PATCH per reconcile and none when nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

import kopf

from amlops import API_GROUP
from amlops.backends.base import Backend
from amlops.crds import VERSION
from amlops.handlers import runtime, tenancy
from amlops.handlers.objects import Resource, SpecError, schema_problems, source_of
from amlops.handlers.options import KOPF_STATUS_KEY, SETTINGS
from amlops.handlers.runtime import Runtime
from amlops.handlers.status import (
    correction,
    event_type,
    is_transition,
    merge_patch,
    redact,
    redact_status,
    result_label,
    with_scoring_scope,
)
from amlops.kinds import KINDS
from amlops.kinds.workspace_binding import REASON_NOT_BOUND
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import (
    READY,
    Outcome,
    Phase,
    build_status,
    find,
    parse_timestamp,
    suspended,
)
from amlops.reconcile.inputs import Source
from amlops.reconcile.registry import Reconciler

D = TypeVar("D")
R = TypeVar("R", bound=driver.Desired)  # a registered kind's desired state


@dataclass(frozen=True)
class Kind(Generic[D]):
    """How one kind plugs into the flow: its desired state, its reconcile and its cleanup."""

    name: str
    desired: Callable[[Resource, Source], D]  # pure: the spec read, paths resolved
    reconcile: Callable[[Runtime, Backend, Resource, D], Result]
    finalize: Callable[[Runtime, Resource], tuple[Action, ...]]


# What the operator does after a reconcile besides writing status (an Endpoint's keys Secret).
After = Callable[[Runtime, Backend, Resource, D, Result], Result]


def kind_of(reconciler: Reconciler[R, Any], after: After[R] | None = None) -> Kind[R]:
    """``reconciler``'s entry points (the ones ``amlops up`` uses) for custom resources."""

    def desired(obj: Resource, source: Source) -> R:
        return reconciler.desired(obj.inputs(source))

    def reconcile(rt: Runtime, backend: Backend, obj: Resource, want: R) -> Result:
        result = reconciler.reconcile(backend, want, obj.status, None)
        return after(rt, backend, obj, want, result) if after is not None else result

    def finalize(rt: Runtime, obj: Resource) -> tuple[Action, ...]:
        return reconciler.finalize(rt.backend, obj.gone())

    return Kind(reconciler.kind, desired, reconcile, finalize)


def _kept(previous: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in (previous or {}).items()
        if k not in ("conditions", "observedGeneration", KOPF_STATUS_KEY)
    }


def _status_only(obj: Resource, outcome: Outcome) -> Result:
    now = datetime.now(UTC)
    status = build_status(outcome, obj.generation, obj.status, now, **_kept(obj.status))
    return Result((), status, outcome)


def evaluate(kind: Kind[D], rt: Runtime, obj: Resource, bindings: tenancy.Bindings) -> Result:
    """One reconcile of ``obj``; never raises: every failure becomes a condition. The Result's
    actions are the ones the reconcile carried out."""
    if obj.suspended:  # says so in Ready and touches nothing, the backend included
        return _status_only(obj, suspended())
    problems = schema_problems(obj)
    if problems:
        return _status_only(obj, Outcome(Phase.STALLED, "InvalidSpec", "; ".join(problems)))
    refused = tenancy.refusal(bindings, obj.namespace, obj.workspace, rt.settings.tenancy)
    if refused is not None:  # its namespace may not manage the workspace: nothing is touched
        return _status_only(obj, Outcome(Phase.STALLED, REASON_NOT_BOUND, refused))
    try:  # the backend acting as the namespace's identity
        rt = tenancy.acting(rt, bindings, obj.namespace, obj.workspace)
    except Exception as exc:  # its Secret missing or unreadable: retried
        message = f"the namespace's Azure identity is not usable: {type(exc).__name__}: {exc}"
        return replace(
            _status_only(obj, Outcome(Phase.RECONCILING, tenancy.IDENTITY_REASON, message)),
            requeue_after=driver.ERROR_RETRY_S,
        )
    if rt.sources is not None:  # a compute added to the checkout since the last look
        rt.sources.refresh()
    try:
        settings = rt.settings
        source = source_of(obj, settings.source_root, settings.limits, settings.state_dir)
        desired = kind.desired(obj, source)
    except (SpecError, KeyError, TypeError, ValueError) as exc:  # a spec the schema let through
        detail = str(exc) if isinstance(exc, SpecError) else f"cannot read spec: {exc!r}"
        reason = str(getattr(exc, "reason", "InvalidSpec"))  # ArtifactsNotFound
        return _status_only(obj, Outcome(Phase.STALLED, reason, detail))
    try:
        return kind.reconcile(rt, rt.backend, obj, desired)
    except Exception as exc:  # our own API calls (the keys Secret): retried like the backend's
        message = f"{type(exc).__name__}: {exc}; retrying"
        return replace(
            _status_only(obj, Outcome(Phase.RECONCILING, "RetryingAfterError", message)),
            requeue_after=driver.ERROR_RETRY_S,
        )


def _message(result: Result) -> str:
    ready = find(result.status.get("conditions") or [], READY) or {}
    return str(ready.get("message", result.outcome.message))


@dataclass(frozen=True)
class Call:
    """What Kopf hands a handler, as far as the flow uses it."""

    body: kopf.Body
    memo: kopf.Memo
    retry: int
    logger: kopf.Logger
    patch: kopf.Patch = field(default_factory=kopf.Patch)
    bindings: tenancy.Bindings = field(default_factory=dict)  # Kopf's WorkspaceBinding index

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Call:
        """From Kopf's keyword arguments. A delete handler's patch is not needed; a timer is
        passed ``retry`` although TimerFn does not declare it."""
        patch = kwargs.get("patch")
        return cls(
            kwargs["body"],
            kwargs["memo"],
            kwargs.get("retry", 0),
            kwargs["logger"],
            kopf.Patch() if patch is None else patch,  # an empty Patch is falsy: keep Kopf's
            tenancy.bindings_of(kwargs),
        )

    @cached_property
    def rt(self) -> Runtime:
        return runtime.of(self.memo)

    @cached_property
    def obj(self) -> Resource:
        return Resource.of(self.body)


def settle(kind: Kind[D], call: Call, result: Result, seconds: float) -> str:
    """Write the status difference into Kopf's patch, post an Event on a transition, count it.
    Returns the (redacted) condition message."""
    obj, logger = call.obj, call.logger
    status = redact_status(with_scoring_scope(result.status))
    changes = merge_patch(obj.status, status)
    if changes:
        call.patch.status.update(changes)
    message = _message(replace(result, status=status))
    outcome = result.outcome
    if is_transition(obj.status, status):
        kopf.event(call.body, type=event_type(outcome), reason=outcome.reason, message=message)
        level = "error" if event_type(outcome) == "Warning" else "info"
        getattr(logger, level)(f"{outcome.phase} ({outcome.reason}): {message}")
    call.rt.metrics.observe(kind.name, obj.uid, result_label(outcome), seconds)
    return message


def _requeue(call: Call, result: Result, message: str) -> None:
    """Kopf's retry with the core's hint (a timer, too, is re-run after the error's delay)."""
    if result.requeue_after is not None:
        delay = call.rt.settings.retry_delay(result.requeue_after, call.retry)
        raise kopf.TemporaryError(message, delay=delay)


def reconcile(kind: Kind[D], call: Call) -> None:
    """create / update / resume."""
    started = time.monotonic()
    with call.rt.exclusive(call.obj.uid):
        result = evaluate(kind, call.rt, call.obj, call.bindings)
    message = settle(kind, call, result, time.monotonic() - started)
    if result.outcome.phase is Phase.STALLED:
        raise kopf.PermanentError(message)
    _requeue(call, result, message)


def _change_pending(obj: Resource) -> bool:
    """A create/update/delete handler is between retries: it owns the object until done."""
    kopf_state = (obj.status or {}).get(KOPF_STATUS_KEY) or {}
    return bool(kopf_state.get("progress"))


# how long a new object without a status is left to its create handler by the drift timer
NEW_OBJECT_GRACE_S = 10.0


def _just_created(body: Mapping[str, Any]) -> bool:
    """No status of ours yet, and created moments ago: its create handler is queued (the
    timer's idle time can pass before it runs, on a busy operator), and reconciling it here
    too would make the handler, holding the body it was given, do it all again (two status
    writes, two Events). Later, a missing status is one Kopf failed to write: the timer's."""
    if "observedGeneration" in (body.get("status") or {}):
        return False
    born = parse_timestamp((body.get("metadata") or {}).get("creationTimestamp"))
    return born is not None and (datetime.now(UTC) - born).total_seconds() < NEW_OBJECT_GRACE_S


def drift(kind: Kind[D], call: Call) -> None:
    """The timer: re-read the backend and correct what changed outside Git. Since it is an
    ordinary reconcile, it also repairs a status that fell behind (a write Kopf gave up on),
    once the object has one."""
    obj = call.obj
    if obj.suspended or _change_pending(obj) or _just_created(call.body):
        return
    started = time.monotonic()
    with call.rt.try_exclusive(obj.uid) as mine:
        if not mine:
            return
        result = evaluate(kind, call.rt, obj, call.bindings)
    message = settle(kind, call, result, time.monotonic() - started)
    if result.actions:
        what = "; ".join(dict.fromkeys(a.describe() for a in result.actions))
        reason, text = correction(obj.status, obj.generation, what, message)
        kopf.event(call.body, type="Normal", reason=reason, message=text)
        call.logger.info(f"{reason}: {text}")
    _requeue(call, result, message)


def finalize(kind: Kind[D], call: Call) -> None:
    """delete, behind the finalizer: clean up in the backend unless Retain (or suspended)."""
    rt, obj = call.rt, call.obj
    refused = tenancy.refusal(call.bindings, obj.namespace, obj.workspace, rt.settings.tenancy)
    if obj.suspended:
        reason, message = "Suspended", "deleted while suspended: the backend was not touched"
    elif refused is not None:  # the namespace may no longer act on the workspace
        reason, message = REASON_NOT_BOUND, f"the backend was not touched: {refused}"
    else:
        rt = tenancy.acting(rt, call.bindings, obj.namespace, obj.workspace)  # its identity
        with rt.exclusive(obj.uid):
            actions = kind.finalize(rt, obj)
            error = driver.finalize(rt.backend, actions)
        if error is not None:
            delay = rt.settings.retry_delay(driver.ERROR_RETRY_S, call.retry)
            raise kopf.TemporaryError(redact(error), delay=delay)
        if actions:
            reason, message = "Deleted", "; ".join(a.describe() for a in actions)
        elif obj.deletion_policy == "Retain":
            reason, message = "Retained", "deletionPolicy is Retain: the assets stay"
        else:
            reason, message = "Deleted", "nothing to delete in the backend"
    kopf.event(call.body, type="Normal", reason=reason, message=message)
    call.logger.info(f"{reason}: {message}")
    rt.forget(obj.uid)


def register(kind: Kind[D]) -> None:
    """Kopf's handlers for ``kind``: reconcile on resume / create / update, the drift timer
    (for a Pipeline it also starts scheduled runs), and delete behind the finalizer. The ids
    are the names Kopf records its progress under in status, so they must never change."""
    crd = KINDS[kind.name].crd
    assert crd is not None, f"{kind.name} has no custom resource"
    resource = (API_GROUP, VERSION, crd.plural)
    name = kind.name.lower()

    # Kopf calls a handler with keyword arguments only (all of them, every time).
    def on_change(**kwargs: Any) -> None:
        reconcile(kind, Call.of(kwargs))

    def on_timer(**kwargs: Any) -> None:
        drift(kind, Call.of(kwargs))

    def on_delete(**kwargs: Any) -> None:
        finalize(kind, Call.of(kwargs))

    for event in (kopf.on.resume, kopf.on.create, kopf.on.update):
        event(*resource, id=f"reconcile_{name}")(on_change)
    kopf.timer(*resource, id=f"check_{name}_drift", **SETTINGS.timer_options())(on_timer)
    kopf.on.delete(*resource, id=f"delete_{name}")(on_delete)
