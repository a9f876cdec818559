"""Conditions: Ready always, Reconciling/Stalled only while true, stable transition times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from amlops.reconcile.conditions import Outcome, Phase, build_status, phase_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _types(status: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_reconciling_and_stalled_are_never_both_present() -> None:
    for phase in Phase:
        status = build_status(Outcome(phase, "R", "m"), 1, None, T0)
        types = _types(status)
        assert not ("Reconciling" in types and "Stalled" in types)
        assert "Ready" in types


def test_transition_time_moves_only_when_a_status_changes() -> None:
    first = build_status(Outcome(Phase.RECONCILING, "Starting", "a"), 1, None, T0)
    same = build_status(Outcome(Phase.RECONCILING, "Running", "b"), 1, first, T1)
    assert same["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same["conditions"][0]["message"] == "b"
    ready = build_status(Outcome(Phase.READY, "Done", "c"), 2, same, T1)
    assert ready["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Done",
            "message": "c",
            "observedGeneration": 2,
            "lastTransitionTime": "2026-01-01T00:05:00Z",
        }
    ]
    assert ready["observedGeneration"] == 2


def test_an_unchanged_outcome_gives_an_equal_status() -> None:
    outcome = Outcome(Phase.READY, "Done", "c")
    first = build_status(outcome, 1, None, T0, version="1")
    assert build_status(outcome, 1, first, T1, version="1") == first


def test_suspend_keeps_the_last_ready_status() -> None:
    ready = build_status(Outcome(Phase.READY, "Done", "c"), 1, None, T0)
    suspended = build_status(Outcome(Phase.SUSPENDED, "Suspended", "s"), 2, ready, T1)
    assert _types(suspended) == {"Ready": "True"}
    assert phase_of(suspended) is Phase.SUSPENDED
    assert phase_of(build_status(Outcome(Phase.STALLED, "X", "y"), 1, None, T0)) is Phase.STALLED
