"""Faults: the operator killed mid-reconcile, API conflicts and server errors, backend errors
that quote credentials."""

from __future__ import annotations

import base64
import json

import pytest

from amlops.backends.base import ComputeInfo
from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    model_spec,
    reason_is,
    wait_for,
)
from tests.operator.proxy import Proxy
from tests.operator.test_pipeline import pipeline_spec

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def test_operator_killed_mid_reconcile_converges_without_duplicate_assets(
    op: OperatorProcess, kube: Kube, proxy: Proxy, backend: BackendView, namespace: str
) -> None:
    names = [f"{namespace}-k{i}" for i in range(10)]
    # Status writes are held at the proxy: every registration the operator makes stays
    # invisible to Kubernetes - the worst moment to die.
    hold = proxy.hold("PATCH", rf"/namespaces/{namespace}/models/[^/]+/status$")
    for i, name in enumerate(names):
        # unpinned versions: a second registration would silently become version 2
        kube.create(namespace, "Model", f"k{i}", model_spec(name=name, version=None))
    wait_for(lambda: hold.held >= 3, what="status writes in flight")
    registered = [n for n in names if backend.versions(n)]
    assert registered, "the kill must come after some registrations"
    op.kill()
    proxy.release(hold, drop=True)
    assert all(
        not (kube.get(namespace, "Model", f"k{i}") or {}).get("status", {}).get("conditions")
        for i in range(len(names))
    )

    op.start()
    for i in range(len(names)):
        kube.wait(namespace, "Model", f"k{i}", is_ready, what="Ready after the restart")
    assert {n: backend.versions(n) for n in names} == {n: ["1"] for n in names}


@pytest.mark.parametrize(("code", "times"), [(409, 1), (500, 3)])
def test_conflicts_and_server_errors_on_status_writes_are_retried(
    op: OperatorProcess, kube: Kube, proxy: Proxy, namespace: str, code: int, times: int
) -> None:
    fault = proxy.inject("PATCH", rf"/namespaces/{namespace}/models/m/status$", code, times)
    kube.create(namespace, "Model", "m", model_spec(name=f"{namespace}-faulty"))
    obj = kube.wait(namespace, "Model", "m", is_ready, timeout=30, what="Ready despite the fault")
    assert fault.hits == times
    assert obj["status"]["observedGeneration"] == 1


def test_backend_errors_reach_the_condition_without_the_credentials_they_quote(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    compute = f"cpu-{namespace}"
    backend.backend.put_compute(ComputeInfo("ws", compute, 1))
    spec = pipeline_spec(compute)
    # the step assembles the credential at run time, so the spec itself does not hold it
    secret = "s3cr3t-St0rage-K3y-9f8e7d"
    encoded = base64.b64encode(secret.encode()).decode()
    spec["job"]["jobs"]["hello"]["command"] = (
        "python -c \"import base64, sys; print('cannot connect: AccountName=mlstore;AccountKey='"
        f" + base64.b64decode('{encoded}').decode()); sys.exit(3)\""
    )
    kube.create(namespace, "Pipeline", "p-fail", spec)
    obj = kube.wait(namespace, "Pipeline", "p-fail", reason_is("RunFailed"), timeout=60)
    message = condition(obj, "Stalled")["message"]
    assert "exited with code 3" in message and "AccountKey=***" in message
    assert secret not in json.dumps(obj)
    assert all(secret not in (e.message or "") for e in kube.events(namespace, "p-fail"))
    assert secret not in op.log_path.read_text(errors="replace")
