"""Status conditions the Kubernetes way (kstatus, as Flux and ASO use them).

``Ready`` is always there. ``Reconciling`` and ``Stalled`` are "abnormal-true": present only
while true, so they can never both be true. ``lastTransitionTime`` moves only when a
condition's status changes, and every condition records the ``observedGeneration`` it was
computed for. A status that did not change is equal to the previous one, so a no-op reconcile
writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Phase(StrEnum):
    READY = "Ready"  # Ready=True
    RECONCILING = "Reconciling"  # Ready=False, Reconciling=True: work in progress, will retry
    STALLED = "Stalled"  # Ready=False, Stalled=True: needs a change from a person
    # spec.suspend: Ready keeps its last status and, with status.observedGeneration, the
    # generation last applied (see build_status)
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: str  # CamelCase, machine-readable
    message: str  # one sentence for people; names the field and what to do


def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC, as Kubernetes writes times (naive datetimes are taken as UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: Any) -> datetime | None:
    """A time as ``timestamp`` (or Kubernetes) writes it; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def find(conditions: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def build_conditions(
    outcome: Outcome,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    def condition(kind: str, status: str) -> dict[str, Any]:
        before = find(previous, kind)
        since = timestamp(now)
        if before is not None and before.get("status") == status:
            since = str(before.get("lastTransitionTime") or since)
        return {
            "type": kind,
            "status": status,
            "reason": outcome.reason,
            "message": outcome.message,
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }

    if outcome.phase is Phase.SUSPENDED:
        before = find(previous, READY)
        ready = str(before.get("status", "Unknown")) if before is not None else "Unknown"
        held = condition(READY, ready)
        applied = before.get("observedGeneration") if before is not None else None
        if applied is None:
            del held["observedGeneration"]  # nothing was ever applied
        else:
            held["observedGeneration"] = applied
        return [held]
    out = [condition(READY, "True" if outcome.phase is Phase.READY else "False")]
    if outcome.phase is Phase.RECONCILING:
        out.append(condition(RECONCILING, "True"))
    elif outcome.phase is Phase.STALLED:
        out.append(condition(STALLED, "True"))
    return out


def build_status(
    outcome: Outcome,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """The whole ``status`` of an object: conditions, observedGeneration and kind fields.

    A suspended object is not reconciled, so its status must not claim the new generation:
    as Flux does (a suspended object's status is left as it was), ``observedGeneration`` and
    Ready's stay at the generation last applied, and kstatus, ``kubectl wait
    --for=condition=Ready`` and ``flux``-style tooling see that an edit made while suspended
    is not applied. Ready keeps its last status, with reason Suspended."""
    previous_conditions = (previous or {}).get("conditions") or []
    observed: int | None = generation
    if outcome.phase is Phase.SUSPENDED:
        observed = (previous or {}).get("observedGeneration")
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        **status,
        "conditions": build_conditions(outcome, generation, previous_conditions, now),
        **{k: v for k, v in fields.items() if v is not None},
    }


def phase_of(status: Mapping[str, Any] | None) -> Phase | None:
    """Read a status back: which phase it reports (None before the first reconcile)."""
    conditions = (status or {}).get("conditions") or []
    if find(conditions, STALLED) is not None:
        return Phase.STALLED
    if find(conditions, RECONCILING) is not None:
        return Phase.RECONCILING
    ready = find(conditions, READY)
    if ready is None:
        return None
    if ready.get("reason") == "Suspended":
        return Phase.SUSPENDED
    return Phase.READY if ready.get("status") == "True" else Phase.RECONCILING


def suspended(message: str = "spec.suspend is true: not reconciling") -> Outcome:
    return Outcome(Phase.SUSPENDED, "Suspended", message)
