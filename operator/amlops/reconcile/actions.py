"""What a reconciler asks a backend to do, and what one reconcile returns.

Each kind's actions live in its reconcile module, next to the reconciler that makes them: frozen
dataclasses, so the reconcile functions stay pure and tests can compare them, each with the one
``execute`` that carries it out against any ``Backend``. The reconcilers only build actions;
``amlops.reconcile.driver`` is what calls ``execute``. The deletes of what an object owns share
one rule, never to delete what is no longer the object's: ``DeleteOwned``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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


@dataclass(frozen=True, kw_only=True)
class DeleteOwned(ABC):
    """Deleting an asset an object made, only while it still is that object's: checked when the
    action runs, so an asset gone already or taken over by another object is left alone. Each
    kind says how it reads the asset's owner (``ours``) and deletes it (``delete``)."""

    # whose the asset must be (``amlops-object``); None: do not check (a caller that knows)
    owner: str | None = None

    def execute(self, backend: Backend) -> None:
        if self.owner is None or self.ours(backend, self.owner):
            self.delete(backend)

    @abstractmethod
    def ours(self, backend: Backend, owner: str) -> bool:
        """The asset is there and is ``owner``'s."""

    @abstractmethod
    def delete(self, backend: Backend) -> None:
        """Delete the asset, whoever's it is (``execute`` checked)."""


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
