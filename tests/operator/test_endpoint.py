"""Endpoint resources: waiting for the models they serve, serving, and their keys - which go
to a Secret the Endpoint owns and nowhere else."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

import pytest

from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    model_spec,
    reason_is,
)
from tests.operator.proxy import Proxy, about

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def endpoint_spec(name: str, model: str) -> dict[str, Any]:
    return {
        "workspace": "ws",
        "endpoint": {"name": name, "auth_mode": "key", "traffic": {"blue": 100}},
        "deployments": [
            {
                "name": "blue",
                "model": f"azureml:{model}:1",
                "code_configuration": {"code": "src/score", "scoring_script": "score.py"},
                "instance_type": "Standard_DS3_v2",
                "instance_count": 1,
            }
        ],
    }


def test_endpoint_waits_for_its_model_then_serves_with_keys_in_an_owned_secret(
    op: OperatorProcess, kube: Kube, proxy: Proxy, namespace: str
) -> None:
    since = proxy.mark()
    kube.create(namespace, "Endpoint", "ep", endpoint_spec("ep-serving", "served-model"))
    waiting = kube.wait(namespace, "Endpoint", "ep", reason_is("DependencyNotReady"))
    assert condition(waiting, "Reconciling")["status"] == "True"
    assert "waiting for model served-model:1 (deployment blue)" in condition(waiting)["message"]

    # retried with backoff (0.5 s doubling, capped at 2 s here) while the model is missing...
    import time

    time.sleep(4)
    status_writes = [
        r for r in proxy.records(since) if about(namespace, "ep")(r) and r.path.endswith("/status")
    ]
    assert len(status_writes) >= 2, "the waiting Endpoint should be retried"
    # ...with one Event for the whole wait and no ERROR line per retry
    assert [e.reason for e in kube.events(namespace, "ep")] == ["DependencyNotReady"]
    errors = [
        r
        for r in op.log_records()
        if r.get("severity") == "error" and (r.get("object") or {}).get("namespace") == namespace
    ]
    assert errors == []

    kube.create(namespace, "Model", "m", model_spec(name="served-model"))
    obj = kube.wait(namespace, "Endpoint", "ep", is_ready, timeout=90, what="serving")
    status = obj["status"]
    assert condition(obj)["reason"] == "Serving"
    assert status["traffic"] == {"blue": 100}
    assert status["deployments"]["blue"]["state"] == "Succeeded"
    assert status["keysSecret"]["name"] == "ep-keys"

    secret = kube.core.read_namespaced_secret("ep-keys", namespace)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "Endpoint",
        "ep",
        obj["metadata"]["uid"],
        True,
    )
    key = base64.b64decode(secret.data["primaryKey"]).decode()
    uri = base64.b64decode(secret.data["scoringUri"]).decode()
    assert uri == status["scoringUri"]

    # the key works...
    request = urllib.request.Request(
        uri,
        data=json.dumps({"x": 1}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.loads(resp.read())["weights"] == "tiny-1"

    # ...and is nowhere but in the Secret: not in status, Events or the operator's log
    secondary = base64.b64decode(secret.data["secondaryKey"]).decode()
    events = " ".join(f"{e.reason} {e.message}" for e in kube.events(namespace, "ep"))
    for value in (key, secondary):
        assert value not in json.dumps(obj)
        assert value not in events
        assert value not in op.log_path.read_text(errors="replace")


def test_endpoint_and_its_deployments_carry_the_commit_and_manifest(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    kube.create(namespace, "Model", "m", model_spec(name="provenance-model"))
    annotations = {
        "amlops.io/source-file": "manifests/endpoints/ep.yaml",
        "amlops.io/git-commit": "c0ffee42",
    }
    spec = endpoint_spec("ep-provenance", "provenance-model")
    # relative to the manifest named by the annotation, as `amlops apply` would leave it
    spec["deployments"][0]["code_configuration"]["code"] = "../../src/score"
    kube.create(namespace, "Endpoint", "ep", spec, annotations)
    kube.wait(namespace, "Endpoint", "ep", is_ready, timeout=90, what="serving")

    view = BackendView(op)
    try:
        endpoint = view.backend.get_endpoint("ws", "ep-provenance")
        deployments = view.backend.catalog.list_deployment_rows("ws", "ep-provenance")
    finally:
        view.close()
    # the same keys as the Model and Pipeline assets and the Pulumi program's resources
    wanted = {
        "amlops-commit": "c0ffee42",
        "amlops-manifest": "manifests/endpoints/ep.yaml",
        "amlops-object": f"{namespace}/ep",
    }
    assert endpoint is not None and dict(endpoint.tags) == wanted
    assert [(d["name"], d["tags"]) for d in deployments] == [("blue", wanted)]
