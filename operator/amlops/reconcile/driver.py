"""Observe, decide, act: runs a kind's pure reconciler against a Backend.

Kind-neutral: a kind brings its observe step (what it reads from the backend and the files its
spec names), its pure reconciler and its actions (each carrying its own ``execute``), and
``amlops.reconcile.registry`` hands them here. Both drivers use it through the registry:
``amlops up`` (``amlops.reconcile.tree``) and the Kopf handlers, with the object's desired
state and previous status, and write the returned status.

A backend error never escapes as a traceback: it becomes the object's condition message
(Stalled when the backend refused the request, Reconciling with a retry for anything else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from amlops.backends.base import Backend, BackendError, BackendUnsupported
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status
from amlops.reconcile.inputs import Gone, Inputs

ERROR_RETRY_S = 5.0
# Stalled because the backend cannot do this at all (BackendUnsupported): another backend can
UNSUPPORTED = "UnsupportedByBackend"
# Actions whose effect is visible at once (a registration): observe again in the same call,
# so one reconcile both acts and reports the result. Bounded: a backend that never converges
# must not loop here.
_MAX_ROUNDS = 3


class Desired(Protocol):
    """All the driver reads of a kind's desired state: the generation its status observes."""

    @property
    def generation(self) -> int: ...


D = TypeVar("D", bound=Desired)
Observed = TypeVar("Observed")


def _error_result(
    exc: Exception,
    action: Action | None,
    done: tuple[Action, ...],
    generation: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Result:
    doing = f"{action.describe()}: " if action is not None else ""
    if isinstance(exc, BackendError):
        reason = UNSUPPORTED if isinstance(exc, BackendUnsupported) else "BackendRefused"
        outcome = Outcome(Phase.STALLED, reason, f"{doing}{exc}")
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
    return Result(done, status, outcome, retry)


def run(
    backend: Backend,
    desired: D,
    previous: Mapping[str, Any] | None,
    now: datetime | None,
    observe: Callable[[Backend, D], Observed],
    decide: Callable[[D, Observed, Mapping[str, Any] | None, datetime], Result],
) -> Result:
    """One reconcile; the Result's actions are the ones carried out, in order (every round)."""
    when = now or datetime.now(UTC)
    status = previous
    done: list[Action] = []
    result: Result | None = None
    for _ in range(_MAX_ROUNDS):
        action: Action | None = None
        try:
            result = decide(desired, observe(backend, desired), status, when)
            for action in result.actions:
                action.execute(backend)
                done.append(action)
        except Exception as exc:  # every failure becomes a condition, never a traceback
            return _error_result(exc, action, tuple(done), desired.generation, status, when)
        if not result.actions:
            break
        status = result.status
    assert result is not None
    return replace(result, actions=tuple(done))


def finalize(backend: Backend, actions: tuple[Action, ...]) -> str | None:
    """Carry out a finalizer's actions; the error message when one failed."""
    for action in actions:
        try:
            action.execute(backend)
        except Exception as exc:  # reported, and the finalizer is retried
            return f"{action.describe()}: {exc}"
    return None


@dataclass(frozen=True)
class Reconciler(Generic[D, Observed]):
    """One operator kind's steps, each in its reconcile module, which ends with its
    ``RECONCILER``; ``amlops.reconcile.registry`` lists them."""

    kind: str
    desired: Callable[[Inputs], D]  # raises SpecError (or a ValueError) for a bad spec
    observe: Callable[[Backend, D], Observed]
    decide: Callable[[D, Observed, Mapping[str, Any] | None, datetime], Result]  # pure
    finalize: Callable[[Backend, Gone], tuple[Action, ...]]

    def reconcile(
        self,
        backend: Backend,
        desired: D,
        previous: Mapping[str, Any] | None,
        now: datetime | None = None,
    ) -> Result:
        """Observe, decide, act; the Result's actions are the ones carried out."""
        return run(backend, desired, previous, now, self.observe, self.decide)
