"""The smallest status patch, transitions worth an Event, and redaction - pure, no cluster."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from amlops.handlers.status import (
    event_type,
    is_transition,
    merge_patch,
    redact,
    redact_status,
    result_label,
)
from amlops.reconcile.conditions import Outcome, Phase


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


leaves = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
statuses = st.dictionaries(st.sampled_from(["a", "b", "c", "conditions"]), values, max_size=4)


@given(statuses, statuses)
def test_the_patch_turns_the_old_status_into_the_new_one(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new


@given(statuses)
def test_an_unchanged_status_needs_no_patch(status: dict[str, Any]) -> None:
    assert merge_patch(status, status) == {}


def test_only_changes_go_out_and_kopf_bookkeeping_is_left_alone() -> None:
    old = {
        "version": "1",
        "deployments": {"blue": {"state": "Succeeded"}, "green": {"state": "Creating"}},
        "mirrorTraffic": {"green": 10},
        "kopf": {"progress": {}},
    }
    new = {"version": "1", "deployments": {"blue": {"state": "Succeeded"}}}
    assert merge_patch(old, new) == {"deployments": {"green": None}, "mirrorTraffic": None}


def _status(ready: str, reason: str, generation: int = 1, *extra: str) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready, "reason": reason, "message": "m"}]
    conditions += [{"type": t, "status": "True", "reason": reason} for t in extra]
    return {"observedGeneration": generation, "conditions": conditions}


def test_transitions_are_new_phases_reasons_or_generations_not_new_messages() -> None:
    waiting = _status("False", "DependencyNotReady", 1, "Reconciling")
    again = {**waiting, "conditions": [{**waiting["conditions"][0], "message": "other"}]}
    assert is_transition(None, waiting)
    assert not is_transition(waiting, again)
    assert is_transition(waiting, _status("True", "Serving"))
    assert is_transition(_status("True", "Serving"), _status("True", "Serving", 2))


def test_event_type_and_metric_label() -> None:
    assert event_type(Outcome(Phase.STALLED, "InvalidSpec", "")) == "Warning"
    assert event_type(Outcome(Phase.RECONCILING, "RetryingAfterError", "")) == "Warning"
    assert event_type(Outcome(Phase.RECONCILING, "DependencyNotReady", "")) == "Normal"
    assert result_label(Outcome(Phase.RECONCILING, "RetryingAfterError", "")) == "Error"
    assert result_label(Outcome(Phase.READY, "Registered", "")) == "Ready"


def test_redaction_masks_credentials_in_their_usual_shapes() -> None:
    text = (
        "GET https://x.blob.core.windows.net/c?sv=2022&sig=AbC123%2Bxyz failed; "
        "AccountName=ml;AccountKey=c2VjcmV0a2V5== ; "
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y; "
        'password="hunter22" api_key: 1234567890'
    )
    out = redact(text)
    for secret in ("AbC123", "c2VjcmV0a2V5", "eyJhbGci", "hunter22", "1234567890"):
        assert secret not in out
    assert "sig=***" in out and "AccountKey=***" in out and "Bearer ***" in out
    assert "x.blob.core.windows.net" in out  # the rest of the message stays useful


def test_known_secret_values_are_masked_anywhere_short_ones_are_not() -> None:
    assert redact("key abcdefghij in text", ["abcdefghij"]) == "key *** in text"
    assert redact("a b c", ["a"]) == "a b c"


def test_redact_status_touches_only_condition_messages() -> None:
    status: dict[str, Any] = {
        "conditions": [{"type": "Ready", "message": "token=abcdef123456"}],
        "runId": "r1",
    }
    out = redact_status(status)
    assert out["conditions"][0]["message"] == "token=***"
    assert out["runId"] == "r1" and status["conditions"][0]["message"] == "token=abcdef123456"
