"""Model resources reconciled by the real operator against a real API server: status and
conditions, Events, generations, suspend, drift, invalid specs, finalizers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    model_spec,
    phase,
    reason_is,
    wait_for,
)
from tests.operator.proxy import Proxy

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def reasons(kube: Kube, namespace: str, name: str) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in kube.events(namespace, name)]


def test_ready_model_reports_version_conditions_and_one_event(
    op: OperatorProcess, kube: Kube, backend: BackendView, proxy: Proxy, namespace: str
) -> None:
    since = proxy.mark()
    kube.create(namespace, "Model", "m", model_spec(name="ready-model"))
    obj = kube.wait(namespace, "Model", "m", is_ready, what="Ready")
    status = obj["status"]
    assert phase(obj) == ("True", "Registered")
    assert (status["modelName"], status["version"], status["observedGeneration"]) == (
        "ready-model",
        "1",
        1,
    )
    assert len(status["sha256"]) == 64
    ready = condition(obj)
    assert ready["observedGeneration"] == 1 and ready["lastTransitionTime"].endswith("Z")
    assert not condition(obj, "Reconciling") and not condition(obj, "Stalled")
    assert backend.versions("ready-model") == ["1"]
    # the Event is posted next to the status write: it may land just after Ready is seen
    events = wait_for(lambda: kube.events(namespace, "m") or None, what="the Registered Event")
    time.sleep(0.5)  # and nothing else follows it
    events = kube.events(namespace, "m")
    assert {(e.type, e.reason) for e in events} == {("Normal", "Registered")}
    assert events[0].reporting_component == "amlops-operator"
    # exactly one, from this suite's operator: its requests are the proxy's (an operator that
    # another module starts on this shared API server resumes every object, and says so too)
    posted = [
        r
        for r in proxy.records(since)
        if r.method == "POST"
        and r.path == f"/api/v1/namespaces/{namespace}/events"
        and r.involved == "Model/m"
    ]
    assert len(posted) == 1, posted


def test_new_generation_moves_observed_generation_not_transition_time(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(name="gen-model"))
    first = kube.wait(namespace, "Model", "m", is_ready)
    kube.patch(namespace, "Model", "m", {"spec": {"model": {"description": "now described"}}})
    second = kube.wait(
        namespace, "Model", "m", lambda o: o["status"]["observedGeneration"] == 2, what="gen 2"
    )
    assert second["metadata"]["generation"] == 2
    assert condition(second)["observedGeneration"] == 2
    # Ready stayed True: its lastTransitionTime must not move
    assert condition(second)["lastTransitionTime"] == condition(first)["lastTransitionTime"]
    # a new generation handled is a transition worth an Event
    assert reasons(kube, namespace, "m") == [("Normal", "Registered")] * 2


def test_relative_path_resolves_against_the_manifest_and_assets_carry_commit(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    annotations = {
        "amlops.io/source-file": "manifests/models/tiny.yaml",
        "amlops.io/git-commit": "0123abcd",
    }
    spec = model_spec(path="../../models/tiny", name="tagged-model")
    kube.create(namespace, "Model", "m", spec, annotations)
    kube.wait(namespace, "Model", "m", is_ready)
    version = backend.backend.get_model_version("ws", "tagged-model", "1")
    assert version is not None
    # the keys the Pulumi program and `amlops up` use too (Azure tag names cannot hold '/')
    assert version.tags["amlops-commit"] == "0123abcd"
    assert version.tags["amlops-manifest"] == "manifests/models/tiny.yaml"
    assert version.tags["amlops-object"] == f"{namespace}/m"


def test_path_leaving_the_source_root_is_stalled_naming_the_field(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(path="../../../../etc", name="escape"))
    # no amlops.io/source(-file): relative to nothing the operator has (kubectl apply)
    obj = kube.wait(namespace, "Model", "m", reason_is("ArtifactsNotFound"))
    stalled = condition(obj, "Stalled")
    assert stalled["status"] == "True"
    assert (
        "spec.model.path" in stalled["message"] and "outside the source root" in stalled["message"]
    )
    assert backend.versions("escape") == []
    assert ("Warning", "ArtifactsNotFound") in reasons(kube, namespace, "m")


def test_spec_the_crd_lets_through_is_stalled_then_recovers_when_fixed(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    # the CRD keeps the embedded CLI v2 model loose; the JSON Schema requires `path`
    spec: dict[str, Any] = {"workspace": "ws", "model": {"name": "no-path", "version": "1"}}
    kube.create(namespace, "Model", "m", spec)
    obj = kube.wait(namespace, "Model", "m", reason_is("InvalidSpec"))
    assert "spec.model: missing required field 'path'" in condition(obj)["message"]
    assert phase(obj) == ("False", "InvalidSpec")
    # a PermanentError stops retries, not the next change
    kube.patch(namespace, "Model", "m", {"spec": {"model": {"path": "models/tiny"}}})
    obj = kube.wait(namespace, "Model", "m", is_ready, what="Ready after the fix")
    assert not condition(obj, "Stalled")


def test_crd_schema_rejects_what_it_can(kube: Kube, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        kube.create(namespace, "Model", "m", model_spec(deletionPolicy="Sometimes"))
    assert err.value.status == 422
    assert "deletionPolicy" in str(err.value.body)


def test_missing_files_are_stalled_with_a_warning_event(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(path="models/nope", name="missing"))
    obj = kube.wait(namespace, "Model", "m", reason_is("ArtifactsNotFound"))
    assert "spec.model.path" in condition(obj, "Stalled")["message"]
    assert reasons(kube, namespace, "m") == [("Warning", "ArtifactsNotFound")]


def test_suspend_stops_reconcile_and_drift_correction(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(name="suspended-model"))
    kube.wait(namespace, "Model", "m", is_ready)
    kube.patch(namespace, "Model", "m", {"spec": {"suspend": True}})
    obj = kube.wait(namespace, "Model", "m", reason_is("Suspended"))
    assert condition(obj)["message"] == "spec.suspend is true: not reconciling"
    assert condition(obj)["status"] == "True"  # Ready keeps its last status

    backend.backend.delete_model_version("ws", "suspended-model", "1")  # drift, outside Git
    # several drift intervals (2 s) pass: nothing may put it back while suspended
    with pytest.raises(AssertionError):
        wait_for(lambda: backend.versions("suspended-model"), timeout=5, what="re-registration")

    kube.patch(namespace, "Model", "m", {"spec": {"suspend": False}})
    kube.wait(namespace, "Model", "m", reason_is("Registered"))
    assert backend.versions("suspended-model") == ["1"]


def test_drift_in_the_backend_is_corrected_by_the_timer(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(name="drifting-model"))
    kube.wait(namespace, "Model", "m", is_ready)
    backend.backend.delete_model_version("ws", "drifting-model", "1")
    wait_for(lambda: backend.versions("drifting-model") == ["1"], what="the timer re-registering")
    wait_for(
        lambda: ("Normal", "DriftCorrected") in reasons(kube, namespace, "m"),
        what="a DriftCorrected Event",
    )


@pytest.mark.parametrize(("policy", "left"), [("Delete", []), ("Retain", ["1"])])
def test_delete_honours_deletion_policy(
    op: OperatorProcess,
    kube: Kube,
    backend: BackendView,
    namespace: str,
    policy: str,
    left: list[str],
) -> None:
    name = f"policy-{policy.lower()}"
    kube.create(namespace, "Model", "m", model_spec(name=name, deletionPolicy=policy))
    kube.wait(namespace, "Model", "m", is_ready)
    kube.delete(namespace, "Model", "m")
    kube.wait_gone(namespace, "Model", "m")
    assert backend.versions(name) == left
    expected = "Deleted" if policy == "Delete" else "Retained"
    assert ("Normal", expected) in reasons(kube, namespace, "m")


def test_finalizer_holds_deletion_until_the_operator_cleans_up(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(name="held-model"))
    obj = kube.wait(namespace, "Model", "m", is_ready)
    assert obj["metadata"]["finalizers"] == ["amlops.io/finalizer"]
    op.stop()
    kube.delete(namespace, "Model", "m")
    held = kube.get(namespace, "Model", "m")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert backend.versions("held-model") == ["1"]
    op.start()
    kube.wait_gone(namespace, "Model", "m")
    assert backend.versions("held-model") == []
