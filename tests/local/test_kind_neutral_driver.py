"""A kind is its own module: the driver runs any kind's observe / decide / actions unchanged.

A kind made up here (a counter held by a fake backend) goes through the same ``Reconciler``
entry the real kinds use, so adding an operator kind needs no change to the driver.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from amlops.backends.base import Backend, BackendError
from amlops.reconcile import driver
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status
from amlops.reconcile.inputs import Gone, Inputs
from amlops.reconcile.registry import RECONCILERS, Reconciler

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RECONCILE = Path(__file__).resolve().parents[2] / "operator" / "amlops" / "reconcile"


class Counters:
    """Stands in for a backend; the made-up kind's calls are all it has."""

    def __init__(self, refuse: bool = False) -> None:
        self.value = 0
        self.calls: list[str] = []
        self.refuse = refuse

    def read(self) -> int:
        self.calls.append("read")
        return self.value

    def bump(self) -> None:
        self.calls.append("bump")
        if self.refuse:
            raise BackendError("counters are read-only here")
        self.value += 1


def _counters(backend: Backend) -> Counters:
    assert isinstance(backend, Counters)
    return backend


@dataclass(frozen=True)
class CounterDesired:
    target: int
    generation: int = 1


@dataclass(frozen=True)
class Bump:
    def describe(self) -> str:
        return "bump the counter"

    def execute(self, backend: Backend) -> None:
        _counters(backend).bump()


def observe(backend: Backend, _desired: CounterDesired) -> int:
    return _counters(backend).read()


def decide(
    desired: CounterDesired, observed: int, previous: Mapping[str, Any] | None, now: datetime
) -> Result:
    if observed >= desired.target:
        outcome = Outcome(Phase.READY, "Counted", f"at {observed}")
        return Result((), build_status(outcome, desired.generation, previous, now), outcome)
    outcome = Outcome(Phase.RECONCILING, "Counting", f"at {observed}")
    return Result((Bump(),), build_status(outcome, desired.generation, previous, now), outcome)


def finalize(_backend: Backend, gone: Gone) -> tuple[Action, ...]:
    return (Bump(),) if gone.deletion_policy == "Delete" else ()


def desired(inputs: Inputs) -> CounterDesired:
    return CounterDesired(int(inputs.spec["target"]), inputs.generation)


COUNTER = Reconciler("Counter", desired, observe, decide, finalize)


def _backend(counters: Counters) -> Backend:
    # a kind needs only the Backend calls it makes; this one makes none of the real ones
    return cast(Backend, counters)


def test_a_kind_outside_the_driver_is_observed_decided_and_executed() -> None:
    backend = Counters()
    result = COUNTER.reconcile(_backend(backend), CounterDesired(2), None, NOW)
    # acted, then observed again in the same call: the status reports the effect
    assert result.outcome.phase is Phase.READY and backend.value == 2
    assert backend.calls == ["read", "bump", "read", "bump", "read"]
    # what was carried out, every round: the drift timer reports these as corrections
    assert result.actions == (Bump(), Bump())


def test_nothing_to_do_is_one_read_and_no_actions() -> None:
    backend = Counters()
    backend.value = 5
    result = COUNTER.reconcile(_backend(backend), CounterDesired(2), None, NOW)
    assert backend.calls == ["read"] and result.actions == ()


def test_a_refused_action_stalls_naming_it() -> None:
    result = COUNTER.reconcile(_backend(Counters(refuse=True)), CounterDesired(1), None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.message == "bump the counter: counters are read-only here"
    assert result.actions == ()


def test_finalize_executes_the_kinds_actions() -> None:
    backend = Counters()
    actions = COUNTER.finalize(_backend(backend), Gone("ws", "c", {}, "Delete"))
    assert driver.finalize(_backend(backend), actions) is None and backend.value == 1
    refusing = _backend(Counters(refuse=True))
    assert driver.finalize(refusing, actions) == "bump the counter: counters are read-only here"


def _module(kind: str) -> str:
    """A kind's reconcile module, snake_case like amlops.kinds' (ServerlessEndpoint ->
    serverless_endpoint)."""
    return "amlops.reconcile." + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def test_the_driver_and_registry_name_no_kind_but_in_their_entries() -> None:
    kinds = {_module(k) for k in RECONCILERS}
    tree = ast.parse((RECONCILE / "driver.py").read_text(encoding="utf-8"))
    imported = {
        f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if any(m.startswith(k) for k in kinds)}
    assert {r.kind: r.observe.__module__ for r in RECONCILERS.values()} == {
        k: _module(k) for k in RECONCILERS
    }
