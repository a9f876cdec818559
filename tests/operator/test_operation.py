"""Running the operator: liveness, Prometheus metrics and structured JSON logs."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.operator.harness import Kube, OperatorProcess, is_ready, model_spec, reason_is, wait_for

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def test_metrics_count_reconciles_durations_and_objects_by_condition(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    before = op.metric("amlops_reconciles_total", kind="Model", result="Stalled")
    kube.create(namespace, "Model", "ok", model_spec(name=f"{namespace}-ok"))
    kube.create(namespace, "Model", "bad", model_spec(path="models/none", name=f"{namespace}-bad"))
    kube.wait(namespace, "Model", "ok", is_ready)
    kube.wait(namespace, "Model", "bad", reason_is("ArtifactsNotFound"))
    wait_for(
        lambda: op.metric("amlops_reconciles_total", kind="Model", result="Stalled") > before,
        what="a Stalled reconcile counted",
    )
    assert op.metric("amlops_objects", kind="Model", condition="Ready") >= 1
    assert op.metric("amlops_objects", kind="Model", condition="Stalled") >= 1
    assert op.metric("amlops_reconcile_duration_seconds_count", kind="Model") >= 2
    text = op.metrics()
    assert 'amlops_reconcile_duration_seconds_bucket{kind="Model",le="0.1"}' in text


def test_logs_are_json_lines_naming_the_object(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    kube.create(namespace, "Model", "logged", model_spec(name=f"{namespace}-logged"))
    kube.wait(namespace, "Model", "logged", is_ready)

    def mine() -> list[dict[str, Any]]:
        return [
            r for r in op.log_records() if (r.get("object") or {}).get("namespace") == namespace
        ]

    records = wait_for(mine, what="log lines about the object")
    assert any(
        r["message"] == f"Ready (Registered): {namespace}-logged:1 registered (sha256 0c98a9068584)"
        for r in records
    )
    assert all(r["object"]["name"] == "logged" for r in records)
    assert all({"timestamp", "severity", "message"} <= r.keys() for r in records)
    # routine drift checks that found nothing stay out of the log (a timer that failed and
    # will retry, which can happen on a loaded machine, is news and is logged)
    assert not any(
        str(r["message"]).startswith("Timer ") and str(r["message"]).endswith(" succeeded.")
        for r in op.log_records()
    )


def test_kopf_run_module_is_the_same_operator(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    """DESIGN: ``kopf run -m amlops.handlers`` starts the operator as well as ``amlops
    operator`` does (same handlers, settings hook and state)."""
    op.stop()
    liveness = f"http://127.0.0.1:{op.liveness_port}/healthz"
    kopf_run = [sys.executable, "-m", "kopf", "run", "-m", "amlops.handlers", "--all-namespaces"]
    op.start(argv=[*kopf_run, f"--liveness={liveness}"])
    try:
        kube.create(namespace, "Model", "via-kopf", model_spec(name=f"{namespace}-kopf"))
        obj = kube.wait(namespace, "Model", "via-kopf", is_ready)
        assert obj["metadata"]["finalizers"] == ["amlops.io/finalizer"]
        assert "lastHandledConfiguration" in obj["status"]["kopf"]
    finally:
        op.stop()
