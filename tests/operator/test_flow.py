"""The handler flow without a cluster: a fake kind and backend, Kopf's patch and Event calls
captured. Pins what reaches the API server and which Kopf error (retry semantics) is raised."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest

from amlops import handlers
from amlops.backends.base import ModelVersionSpec
from amlops.handlers import flow
from amlops.handlers.metrics import Metrics
from amlops.handlers.objects import Resource, SpecError
from amlops.handlers.options import Settings
from amlops.handlers.runtime import Runtime
from amlops.kinds import ORDER
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Outcome, Phase, build_status, timestamp
from amlops.reconcile.model import DeleteModelVersion, RegisterModel
from amlops.reconcile.registry import RECONCILERS

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = {"workspace": "ws", "model": {"name": "m", "version": "1", "path": "models/m"}}


class Backend:
    """Records calls; any call at all is visible in ``calls``. Calls named in ``failing``
    raise."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> None:
            self.calls.append(name)
            if name in self.failing:
                raise OSError(f"{name} failed: password=p4ssw0rd-xyz")

        return call


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def memo(backend: Backend, tmp_path: Any) -> kopf.Memo:
    rt = Runtime(
        Settings(source_root=tmp_path, retry_base_s=5, retry_max_s=60),
        backend,
        object(),
        Metrics(),
        lambda: None,
    )
    memo = kopf.Memo()
    memo.runtime = rt
    return memo


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, str]]]:
    posted: list[tuple[str, str, str]] = []

    def event(_body: Any, *, type: str, reason: str, message: str = "") -> None:  # noqa: A002
        posted.append((type, reason, message))

    monkeypatch.setattr(kopf, "event", event)
    yield posted


def body(spec: dict[str, Any] = SPEC, status: dict[str, Any] | None = None) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec,
    }
    if status is not None:
        raw["status"] = status
    return kopf.Body(raw)  # type: ignore[arg-type]


def born(created: str) -> kopf.Body:
    """``body()`` without a status, created at ``created``."""
    raw = dict(body())
    raw["metadata"] = {**raw["metadata"], "creationTimestamp": created}
    return kopf.Body(raw)  # type: ignore[arg-type]


def kind(outcome: Outcome | Exception, requeue: float | None = None) -> flow.Kind[str]:
    def reconcile(_rt: Runtime, backend: Any, obj: Resource, _d: str) -> Result:
        backend.observe()
        if isinstance(outcome, Exception):
            raise outcome
        return Result((), build_status(outcome, obj.generation, obj.status, NOW), outcome, requeue)

    def finalize(_rt: Runtime, obj: Resource) -> tuple[DeleteModelVersion, ...]:
        if obj.deletion_policy == "Retain":
            return ()
        return (DeleteModelVersion("ws", "m", "1"),)

    return flow.Kind("Model", lambda _o, _s: "desired", reconcile, finalize)


LOG = __import__("logging").getLogger("test")
READY = Outcome(Phase.READY, "Registered", "m:1 registered")


def test_ready_writes_status_once_and_posts_one_event(memo: kopf.Memo, events: list[Any]) -> None:
    patch = kopf.Patch()
    flow.reconcile(kind(READY), flow.Call(body(), memo, 0, LOG, patch))
    assert patch["status"]["conditions"][0]["reason"] == "Registered"
    assert events == [("Normal", "Registered", "m:1 registered")]

    # the same outcome again: nothing to patch, no Event
    status = dict(patch["status"])
    again = kopf.Patch()
    flow.reconcile(kind(READY), flow.Call(body(status=status), memo, 0, LOG, again))
    assert dict(again) == {} and len(events) == 1


def test_suspended_objects_never_reach_the_backend(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    patch = kopf.Patch()
    flow.reconcile(kind(READY), flow.Call(body({**SPEC, "suspend": True}), memo, 0, LOG, patch))
    assert backend.calls == []
    assert patch["status"]["conditions"][0]["reason"] == "Suspended"


def test_invalid_spec_is_stalled_naming_the_field_and_not_retried(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    patch = kopf.Patch()
    bad = {"workspace": "ws", "model": {"name": "m", "version": "1"}}
    with pytest.raises(kopf.PermanentError, match=r"spec\.model: missing required field 'path'"):
        flow.reconcile(kind(READY), flow.Call(body(bad), memo, 0, LOG, patch))
    assert backend.calls == []
    kinds = [c["type"] for c in patch["status"]["conditions"]]
    assert kinds == ["Ready", "Stalled"]
    assert events[0][:2] == ("Warning", "InvalidSpec")


def test_spec_errors_from_reading_the_spec_are_stalled(memo: kopf.Memo, events: list[Any]) -> None:
    broken = flow.Kind(
        "Model",
        lambda _o, _s: (_ for _ in ()).throw(SpecError("spec.model.path: outside")),
        kind(READY).reconcile,
        kind(READY).finalize,
    )
    with pytest.raises(kopf.PermanentError, match=r"spec\.model\.path: outside"):
        flow.reconcile(broken, flow.Call(body(), memo, 0, LOG, kopf.Patch()))


def test_waiting_is_retried_with_exponential_backoff_from_the_hint(
    memo: kopf.Memo, events: list[Any]
) -> None:
    waiting = Outcome(Phase.RECONCILING, "DependencyNotReady", "waiting for model x")
    with pytest.raises(kopf.TemporaryError) as err:
        flow.reconcile(kind(waiting, requeue=0.5), flow.Call(body(), memo, 3, LOG, kopf.Patch()))
    assert err.value.delay == 4.0  # 0.5 s doubled three times
    assert events[0][:2] == ("Normal", "DependencyNotReady")


def test_unexpected_errors_become_a_condition_and_a_capped_retry(
    memo: kopf.Memo, events: list[Any]
) -> None:
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as err:
        flow.reconcile(
            kind(RuntimeError("boom token=abcdef123456")), flow.Call(body(), memo, 10, LOG, patch)
        )
    assert err.value.delay == 60
    message = patch["status"]["conditions"][0]["message"]
    assert message.startswith("RuntimeError: boom token=***") and "abcdef123456" not in message
    assert events[0][:2] == ("Warning", "RetryingAfterError")


def test_drift_check_skips_objects_a_change_handler_owns(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    pending = {"kopf": {"progress": {"reconcile_model": {"retries": 2}}}}
    flow.drift(kind(READY), flow.Call(body(status=pending), memo, 0, LOG, kopf.Patch()))
    flow.drift(kind(READY), flow.Call(body({**SPEC, "suspend": True}), memo, 0, LOG, kopf.Patch()))
    # a new object (no status of ours yet) is its create handler's, queued behind the timer
    flow.drift(
        kind(READY), flow.Call(born(timestamp(datetime.now(UTC))), memo, 0, LOG, kopf.Patch())
    )
    assert backend.calls == [] and events == []
    # ... until its grace is over: a status Kopf failed to write is the timer's to repair
    flow.drift(kind(READY), flow.Call(born("2020-01-01T00:00:00Z"), memo, 0, LOG, kopf.Patch()))
    assert backend.calls == ["observe"]


def test_drift_check_reports_a_correction(memo: kopf.Memo, events: list[Any]) -> None:
    # a kind's reconcile returns the actions it carried out (amlops.reconcile.driver.run)
    register = RegisterModel("ws", ModelVersionSpec("m", "1", Path("models/m")))

    def fixing(_rt: Runtime, backend: Any, obj: Resource, _d: str) -> Result:
        register.execute(backend)
        return Result((register,), build_status(READY, 1, obj.status, NOW), READY)

    fixer = flow.Kind("Model", lambda _o, _s: "d", fixing, kind(READY).finalize)
    was_ready = build_status(READY, 1, None, NOW)  # only a Ready object can drift
    flow.drift(fixer, flow.Call(body(status=was_ready), memo, 0, LOG, kopf.Patch()))
    assert ("Normal", "DriftCorrected") in [e[:2] for e in events]


def test_drift_check_that_changed_nothing_reports_no_correction(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    was_ready = build_status(READY, 1, None, NOW)
    flow.drift(kind(READY), flow.Call(body(status=was_ready), memo, 0, LOG, kopf.Patch()))
    assert backend.calls == ["observe"]
    assert "DriftCorrected" not in [e[1] for e in events]


def test_finalize_deletes_retains_or_leaves_a_suspended_object_alone(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    flow.finalize(kind(READY), flow.Call(body(), memo, 0, LOG))
    assert backend.calls == ["delete_model_version"]
    flow.finalize(kind(READY), flow.Call(body({**SPEC, "deletionPolicy": "Retain"}), memo, 0, LOG))
    flow.finalize(kind(READY), flow.Call(body({**SPEC, "suspend": True}), memo, 0, LOG))
    assert backend.calls == ["delete_model_version"]
    assert [e[1] for e in events] == ["Deleted", "Retained", "Suspended"]


def test_a_failed_cleanup_keeps_the_finalizer_and_retries(
    memo: kopf.Memo, backend: Backend, events: list[Any]
) -> None:
    backend.failing.add("delete_model_version")
    with pytest.raises(kopf.TemporaryError) as err:
        flow.finalize(kind(READY), flow.Call(body(), memo, 1, LOG))
    assert "password=***" in str(err.value) and "p4ssw0rd" not in str(err.value)
    assert err.value.delay == 10  # the core's 5 s error retry, doubled once
    assert events == []  # no "Deleted" before it is


def test_every_operator_kind_is_handled_through_its_registry_entry() -> None:
    # the handlers and `amlops up` reconcile a kind through the same entry points
    assert tuple(handlers.KINDS) == ORDER == tuple(RECONCILERS)
    assert set(handlers.AFTER) <= set(RECONCILERS)
