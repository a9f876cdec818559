"""What a reconciler asks a backend to do, and what one reconcile returns.

Each kind's actions live in its reconcile module, next to the reconciler that makes them: frozen
dataclasses, so the reconcile functions stay pure and tests can compare them, each with the one
``execute`` that carries it out against any ``Backend``. The reconcilers only build actions;
``amlops.reconcile.driver`` is what calls ``execute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from amlops.backends.base import Backend
from amlops.reconcile.conditions import Outcome


class Action(Protocol):
    """One change to a backend; every action is a change, so one that ran is a correction."""

    def describe(self) -> str:
        """What the action does, for condition messages and Events."""
        ...

    def execute(self, backend: Backend) -> None:
        """Carry it out; raises BackendError (or anything the backend raises)."""
        ...


@dataclass(frozen=True)
class Result:
    """One reconcile: the actions to take now and the status to report.

    From a pure reconciler ``actions`` are what to do; from ``amlops.reconcile.driver`` they are
    what it did to reach ``status`` (every round), which the drift timer reports as corrections.
    ``requeue_after`` (seconds) asks to be called again that soon even if nothing changes, while
    something the backend does is in progress; None means "on the next change or timer".
    """

    actions: tuple[Action, ...]
    status: dict[str, Any]
    outcome: Outcome
    requeue_after: float | None = None
