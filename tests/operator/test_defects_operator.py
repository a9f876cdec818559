"""Operator defects found in review (issue 13), each pinned on the real kube-apiserver:

* D1 an invalid ComputeCluster in the source root is reported (file:line and field) and skipped;
  the operator still starts and serves /healthz;
* D2 a compute added to the source root after start-up reaches the Pipeline waiting for it;
* D4 an edit made while suspended is not reported as observed: observedGeneration (the
  status's and Ready's) stays at the generation last applied, as Flux leaves it;
* D12 a drift check that finishes what was waiting reports a recovery, not DriftCorrected;
* D13 a local scoring URI says in status that it is pod-local.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.envtest.apiserver import Cluster
from tests.local.test_source_computes import compute_yaml
from tests.operator.harness import (
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    model_spec,
    operator_process,
    phase,
    reason_is,
    wait_for,
)
from tests.operator.proxy import Proxy
from tests.operator.test_endpoint import endpoint_spec
from tests.operator.test_pipeline import pipeline_spec

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


# -- an operator of the test's own, for the tests about its source root ----------------------

Start = Callable[[Path], OperatorProcess]


@pytest.fixture
def own_operator(
    operator: OperatorProcess,
    cluster: Cluster,
    proxy: Proxy,
    tmp_path: Path,
) -> Iterator[Start]:
    """Starts an operator on a source root of the test's choosing, with a fresh state
    directory; the suite's operator is stopped meanwhile (two operators must not reconcile one
    object)."""
    started: list[OperatorProcess] = []
    operator.stop()

    def start(source_root: Path) -> OperatorProcess:
        proc = operator_process(cluster, proxy, tmp_path, source_root, AMLOPS_RETRY_MAX="1")
        started.append(proc)
        proc.start()
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
        operator.start()


def _logged(proc: OperatorProcess, *parts: str) -> list[dict[str, Any]]:
    return [r for r in proc.log_records() if all(p in str(r.get("message")) for p in parts)]


def test_an_invalid_compute_cluster_is_reported_and_skipped_and_the_operator_starts(
    own_operator: Start, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    root = tmp_path / "source"
    (root / "infra").mkdir(parents=True)
    (root / "infra" / "bad.yaml").write_text(compute_yaml(f"bad-{namespace}", "two"))
    (root / "infra" / "good.yaml").write_text(compute_yaml(f"good-{namespace}", "2"))

    proc = own_operator(root)  # returns once /healthz answers
    assert proc.running

    reported = _logged(proc, "infra/bad.yaml:9:", "spec.maxInstances")
    assert len(reported) == 1, proc.tail()
    assert f"ComputeCluster/ws/bad-{namespace}" in reported[0]["message"]
    assert "Traceback" not in proc.log_path.read_text()

    # the valid cluster was learnt; the invalid one was not
    kube.create(namespace, "Pipeline", "good", pipeline_spec(f"good-{namespace}"))
    kube.create(namespace, "Pipeline", "bad", pipeline_spec(f"bad-{namespace}"))
    kube.wait(namespace, "Pipeline", "good", is_ready, timeout=60, what="a run")
    waiting = kube.wait(namespace, "Pipeline", "bad", reason_is("DependencyNotReady"))
    assert f"ComputeCluster bad-{namespace}" in condition(waiting)["message"]


def test_a_compute_added_after_start_up_reaches_the_pipeline_waiting_for_it(
    own_operator: Start, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    root = tmp_path / "source"  # not there yet: the checkout arrives after start-up
    own_operator(root)
    compute = f"late-{namespace}"
    kube.create(namespace, "Pipeline", "p", pipeline_spec(compute))
    kube.wait(namespace, "Pipeline", "p", reason_is("DependencyNotReady"))

    time.sleep(4)
    root.mkdir()
    (root / "compute.yaml").write_text(compute_yaml(compute, "1"))
    obj = kube.wait(namespace, "Pipeline", "p", is_ready, timeout=60, what="a run")
    assert condition(obj)["reason"] == "Succeeded"


# -- the suite's operator ----------------------------------------------------------------------


def _handled(kube: Kube, namespace: str, name: str, description: str) -> None:
    """Wait until the operator has handled the spec holding ``description`` (Kopf records
    the spec it handled last in status)."""

    def seen(obj: dict[str, Any]) -> bool:
        last = ((obj.get("status") or {}).get("kopf") or {}).get("lastHandledConfiguration")
        if not isinstance(last, str):
            return False
        handled = json.loads(last)["spec"]["model"]
        return bool(handled.get("description") == description)

    kube.wait(namespace, "Model", name, seen, what=f"the edit {description!r} handled")


def test_an_edit_made_while_suspended_is_not_observed_until_resumed(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    spec = model_spec(name="paused-model")
    kube.create(namespace, "Model", "m", spec)
    applied = kube.wait(namespace, "Model", "m", is_ready)["metadata"]["generation"]

    kube.patch(namespace, "Model", "m", {"spec": {"suspend": True}})
    kube.wait(namespace, "Model", "m", reason_is("Suspended"))
    kube.patch(namespace, "Model", "m", {"spec": {"model": {"description": "edited"}}})
    _handled(kube, namespace, "m", "edited")

    obj = kube.get(namespace, "Model", "m")
    assert obj is not None and obj["metadata"]["generation"] == applied + 2
    ready = condition(obj)
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    # what `kubectl wait --for=condition=Ready` and kstatus compare with metadata.generation
    assert ready["observedGeneration"] == applied
    assert obj["status"]["observedGeneration"] == applied
    assert not is_ready(obj)

    kube.patch(namespace, "Model", "m", {"spec": {"suspend": False}})
    resumed = kube.wait(namespace, "Model", "m", is_ready, what="the edit applied")
    assert condition(resumed)["observedGeneration"] == resumed["metadata"]["generation"]


def test_files_appearing_later_are_reported_as_a_recovery_not_as_drift(
    op: OperatorProcess, kube: Kube, namespace: str, source_root: Path
) -> None:
    path = f"models/late-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(path=path, name=f"late-{namespace}"))
    kube.wait(namespace, "Model", "m", reason_is("ArtifactsNotFound"))

    (source_root / path).mkdir(parents=True)
    (source_root / path / "weights.txt").write_text("late\n")
    kube.wait(namespace, "Model", "m", is_ready, what="registered by the drift check")

    def recovered() -> list[Any]:
        return [e for e in kube.events(namespace, "m") if e.reason == "Recovered"]

    (event,) = wait_for(recovered, what="a Recovered Event")
    assert event.type == "Normal" and "ArtifactsNotFound" in event.message
    assert "DriftCorrected" not in [e.reason for e in kube.events(namespace, "m")]


def test_a_local_scoring_uri_is_marked_pod_local_in_status(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    model = f"podlocal-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(name=model))
    kube.create(namespace, "Endpoint", "ep", endpoint_spec(f"ep-{namespace}", model))
    obj = kube.wait(namespace, "Endpoint", "ep", is_ready, timeout=90, what="serving")
    assert phase(obj)[0] == "True"
    assert obj["status"]["scoringUri"].startswith("http://127.0.0.1:")
    assert obj["status"]["scoringUriScope"] == "PodLocal"
