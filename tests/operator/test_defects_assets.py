"""Asset defects found in review (issue 13: D3, D5, D6, D7, D8), through the real operator on a
real API server: a Secret the Endpoint did not create is never taken over; a deployment whose
model goes keeps its traffic; another namespace's model is never adopted nor deleted; a new
version carries the commit of its files; every version an object registered is recorded and
goes with it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.gitserver import git
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
from tests.operator.test_endpoint import endpoint_spec

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    return [e.reason for e in kube.events(namespace, name)]


# -- D3: a Secret named <endpoint>-keys that is not the Endpoint's ----------------------------


def test_an_existing_keys_secret_is_not_taken_over(
    op: OperatorProcess, kube: Kube, proxy: Proxy, namespace: str
) -> None:
    theirs = {"token": base64.b64encode(b"someone else's").decode()}
    kube.core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="ep-keys", labels={"team": "x"}), data=theirs),
    )
    model = f"keys-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(name=model))
    kube.create(namespace, "Endpoint", "ep", endpoint_spec(f"ep-{namespace}", model))

    obj = kube.wait(namespace, "Endpoint", "ep", reason_is("KeysSecretConflict"), timeout=90)
    stalled = condition(obj, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "KeysSecretConflict"
    assert "ep-keys" in stalled["message"]
    assert "keysSecret" not in obj["status"]
    secret = kube.core.read_namespaced_secret("ep-keys", namespace)
    assert secret.metadata.owner_references is None  # nothing would delete it with the Endpoint
    assert secret.data == theirs and secret.metadata.labels == {"team": "x"}
    assert "KeysSecretConflict" in reasons(kube, namespace, "ep")

    # the Endpoint names a Secret of its own: created there, theirs still untouched
    kube.patch(namespace, "Endpoint", "ep", {"spec": {"keysSecretName": "ep-serving-keys"}})
    obj = kube.wait(namespace, "Endpoint", "ep", reason_is("Serving"), timeout=60)
    mine = kube.core.read_namespaced_secret("ep-serving-keys", namespace)
    owner = mine.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == ("Endpoint", obj["metadata"]["uid"], True)
    assert set(mine.data) == {"primaryKey", "secondaryKey", "scoringUri"}
    assert obj["status"]["keysSecret"]["name"] == "ep-serving-keys"
    secret = kube.core.read_namespaced_secret("ep-keys", namespace)
    assert secret.metadata.owner_references is None and secret.data == theirs

    # its status lost the record (as after a crash before the status write): the Secret exists,
    # is found to be the Endpoint's (by its ownerReference, never read) and written again
    since = proxy.mark()
    kube.custom.patch_namespaced_custom_object_status(
        "amlops.io", "v1alpha1", namespace, "endpoints", "ep", {"status": {"keysSecret": None}}
    )
    obj = kube.wait(namespace, "Endpoint", "ep", lambda o: "keysSecret" in o["status"], timeout=60)
    assert condition(obj)["reason"] == "Serving"
    calls = [(r.verb, r.status) for r in proxy.records(since) if "/secrets" in r.path]
    assert calls[:3] == [("create", 409), ("patch", 200), ("patch", 200)], calls


# -- D5: the model of a serving deployment is deleted -----------------------------------------


def test_a_deployment_whose_model_goes_keeps_its_traffic(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    model, name = f"served-{namespace}", f"ep-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(name=model))
    kube.create(namespace, "Endpoint", "ep", endpoint_spec(name, model))
    obj = kube.wait(namespace, "Endpoint", "ep", is_ready, timeout=90, what="serving")
    assert obj["status"]["traffic"] == {"blue": 100}

    kube.delete(namespace, "Model", "m")
    kube.wait_gone(namespace, "Model", "m")
    assert backend.versions(model) == []
    obj = kube.wait(namespace, "Endpoint", "ep", reason_is("DependencyNotReady"), timeout=30)
    assert f"{model}:1" in condition(obj)["message"]
    assert obj["status"]["traffic"] == {"blue": 100}
    blue = obj["status"]["deployments"]["blue"]
    assert blue["state"] == "Succeeded" and f"{model}:1" in blue["message"]

    # several drift intervals (2 s): the split is never rewritten, in the backend either
    with pytest.raises(AssertionError):
        wait_for(
            lambda: "DriftCorrected" in reasons(kube, namespace, "ep"),
            timeout=6,
            what="a traffic correction",
        )
    endpoint = backend.backend.get_endpoint("ws", name)
    assert endpoint is not None and dict(endpoint.traffic) == {"blue": 100}

    # the model back: serving again, as before
    kube.create(namespace, "Model", "m", model_spec(name=model))
    kube.wait(namespace, "Endpoint", "ep", reason_is("Serving"), timeout=60)


# -- D6: a Model in another namespace naming the same workspace and model ---------------------


def test_another_namespaces_model_is_neither_adopted_nor_deleted(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    model = f"shared-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(name=model))
    kube.wait(namespace, "Model", "m", is_ready)
    t1 = kube.new_namespace("t1")

    for version in ("1", None):  # the same version, or the name's latest
        kube.create(t1, "Model", "m", model_spec(name=model, version=version))
        obj = kube.wait(t1, "Model", "m", reason_is("OwnedElsewhere"))
        assert condition(obj, "Stalled")["status"] == "True"
        assert f"{namespace}/m" in condition(obj)["message"]
        assert "version" not in obj["status"] and "registeredVersions" not in obj["status"]
        kube.delete(t1, "Model", "m")
        kube.wait_gone(t1, "Model", "m")
        assert backend.versions(model) == ["1"]

    dev = backend.backend.get_model_version("ws", model, "1")
    assert dev is not None and dev.tags["amlops-object"] == f"{namespace}/m"
    assert dev.tags["amlops-owner"].startswith("amlops-operator:")
    assert is_ready(kube.wait(namespace, "Model", "m", is_ready))


# -- D7: files changed under an unchanged object ----------------------------------------------


def test_a_new_version_carries_the_commit_of_its_files(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str, source_root: Path
) -> None:
    repo = source_root / f"git-{namespace}"
    (repo / "weights").mkdir(parents=True)
    (repo / "weights" / "w.txt").write_text("one\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c1")
    c1 = git(repo, "rev-parse", "HEAD")
    model = f"moving-{namespace}"
    spec = model_spec(path=f"git-{namespace}/weights", version=None, name=model)
    kube.create(namespace, "Model", "m", spec, {"amlops.io/git-commit": c1})
    kube.wait(namespace, "Model", "m", is_ready)

    (repo / "weights" / "w.txt").write_text("two\n")
    git(repo, "commit", "-qam", "c2: new weights, same manifest")
    c2 = git(repo, "rev-parse", "HEAD")
    obj = kube.wait(namespace, "Model", "m", lambda o: o["status"].get("version") == "2")
    assert obj["metadata"]["annotations"]["amlops.io/git-commit"] == c1  # never re-applied
    tags = {
        v.version: v.tags["amlops-commit"] for v in backend.backend.list_model_versions("ws", model)
    }
    assert tags == {"1": c1, "2": c2}


# -- D8: editing the version 1 -> 2 -> 1 -> 7 -------------------------------------------------


def at(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: is_ready(obj) and obj["status"].get("version") == version


def test_versions_an_object_moved_away_from_stay_recorded_and_go_with_it(
    op: OperatorProcess, kube: Kube, backend: BackendView, namespace: str
) -> None:
    model = f"edited-{namespace}"
    kube.create(namespace, "Model", "m", model_spec(name=model, version="1"))
    kube.wait(namespace, "Model", "m", is_ready)
    obj: dict[str, Any] = {}
    for version in ("2", "1", "7"):
        kube.patch(namespace, "Model", "m", {"spec": {"model": {"version": version}}})
        obj = kube.wait(namespace, "Model", "m", at(version), what=f"version {version}")
    assert obj["status"]["registeredVersions"] == [f"{model}:1", f"{model}:2", f"{model}:7"]
    assert backend.versions(model) == ["1", "2", "7"]
    owners = {v.tags["amlops-object"] for v in backend.backend.list_model_versions("ws", model)}
    assert owners == {f"{namespace}/m"}

    kube.delete(namespace, "Model", "m")
    kube.wait_gone(namespace, "Model", "m")
    assert backend.versions(model) == []
