"""``amlops apply`` decisions without a cluster: what counts as unchanged, where objects go,
and the request order against a fake API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from amlops.cli import common
from amlops.cli.apply import desired_objects
from amlops.core.provenance import Origin
from amlops.core.validate import validate_paths
from amlops.gitops.apply import (
    APPLIED_DIGEST,
    GIT_COMMIT,
    holds,
    instance_options,
    stamp,
    sync,
    unchanged,
)
from tests.operator.proxy import Record, rbac_rules

ROOT = Path(__file__).resolve().parents[2]


def origin_abc(file: str) -> Origin:
    """The repository-relative path of ``file`` at a made-up commit ``abc``."""
    return Origin(Path(file).resolve().relative_to(ROOT).as_posix(), "abc")


def obj(spec: dict[str, Any], commit: str | None = "c1") -> dict[str, Any]:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "m", "namespace": "ns", "labels": {}, "annotations": {}},
        "spec": spec,
    }
    return stamp(body, commit)


def live_from(desired: dict[str, Any], **extra_spec: Any) -> dict[str, Any]:
    """What the API server returns: defaults, status, system metadata added."""
    live = copy.deepcopy(desired)
    live["spec"].update({"suspend": False, "deletionPolicy": "Delete", **extra_spec})
    live["metadata"].update({"uid": "u", "resourceVersion": "7", "finalizers": ["f"]})
    live["status"] = {"conditions": []}
    return live


def test_holds_ignores_extra_live_fields_but_not_changed_ones() -> None:
    assert holds({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2, "d": 3}], "x": 1}})
    assert not holds({"a": [1, 2]}, {"a": [1, 2, 3]})
    assert not holds({"a": "1"}, {"a": 1})
    assert not holds({"a": {"b": 1}}, {"a": {}})


def test_unchanged_despite_defaults_and_a_new_commit_changed_by_a_spec_edit() -> None:
    desired = obj({"workspace": "ws", "model": {"name": "m"}})
    live = live_from(desired)
    assert unchanged(desired, live)
    assert unchanged(obj({"workspace": "ws", "model": {"name": "m"}}, commit="c2"), live)
    assert not unchanged(obj({"workspace": "ws", "model": {"name": "n"}}), live)
    assert not unchanged(desired, None)


def test_someone_elses_edit_of_an_applied_field_is_taken_back() -> None:
    desired = obj({"workspace": "ws", "model": {"name": "m"}})
    live = live_from(desired)
    live["spec"]["model"]["name"] = "edited-by-hand"
    assert not unchanged(desired, live)  # same digest, but the field no longer holds


def test_a_removed_field_changes_the_digest() -> None:
    with_field = obj({"workspace": "ws", "model": {"name": "m", "description": "d"}})
    without = obj({"workspace": "ws", "model": {"name": "m"}})
    assert unchanged(without, live_from(with_field)) is False
    assert (
        with_field["metadata"]["annotations"][APPLIED_DIGEST]
        != without["metadata"]["annotations"][APPLIED_DIGEST]
    )
    assert without["metadata"]["annotations"][GIT_COMMIT] == "c1"


def test_objects_go_to_their_workspace_namespace_and_duplicates_are_refused() -> None:
    report = validate_paths([ROOT / "manifests"], sdk=False)
    objects = desired_objects(report.manifests, None, origin_abc, "default")
    places = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects}
    assert ("Model", "mlw-platform-dev", "slm-base") in places
    assert ("Model", "mlw-platform-prod", "slm-base-prod") in places
    assert [o["kind"] for o in objects] == sorted(
        (o["kind"] for o in objects), key=("Model", "Pipeline", "Endpoint").index
    )
    model = next(o for o in objects if o["kind"] == "Model")
    assert (
        model["metadata"]["annotations"]["amlops.io/source-file"]
        == "manifests/models/slm-base.yaml"
    )
    # the example's names are unique per kind (D10): one namespace holds them all
    together = desired_objects(report.manifests, "one-namespace", origin_abc, "default")
    assert sorted(o["metadata"]["name"] for o in together) == sorted(
        o["metadata"]["name"] for o in objects
    )
    assert len(together) == len(objects) >= 5
    with pytest.raises(common.UsageError, match="also defined"):
        desired_objects([*report.manifests] * 2, "one-namespace", origin_abc, "default")


class FakeKube:
    """Answers like an API server where nothing exists yet; records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.store: dict[str, dict[str, Any]] = {}

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any] | None:
        self.requests.append((method, path))
        if method == "GET" and "customresourcedefinitions" in path:
            crd = self.store.get(path)
            return (
                {**crd, "status": {"conditions": [{"type": "Established", "status": "True"}]}}
                if crd
                else None
            )
        return self.store.get(path) if method == "GET" else {}

    def apply(self, path: str, body: dict[str, Any]) -> None:
        self.requests.append(("APPLY", path))
        self.store[path] = copy.deepcopy(body)


def test_order_is_crds_namespaces_models_endpoints_and_a_repeat_writes_nothing() -> None:
    report = validate_paths([ROOT / "manifests"], sdk=False)
    objects = desired_objects(report.manifests, None, origin_abc, "default")
    kube = FakeKube()
    plan = sync(kube, objects, instance_options("default")).plan  # type: ignore[arg-type]
    applied = [p.split("/")[-2] for m, p in kube.requests if m == "APPLY"]
    order = [x for i, x in enumerate(applied) if i == 0 or applied[i - 1] != x]
    assert order == ["customresourcedefinitions", "namespaces", "models", "pipelines", "endpoints"]
    assert plan.writes == len(applied)


def test_the_proxy_names_verbs_and_rbac_rules_like_the_api_server() -> None:
    def rec(method: str, path: str, status: int = 200, **query: str) -> Record:
        return Record(0.0, method, path, dict(query), status, "")

    assert rec("GET", "/apis/amlops.io/v1alpha1/models", watch="true").verb == "watch"
    assert rec("GET", "/apis/amlops.io/v1alpha1/models").verb == "list"
    assert rec("GET", "/api/v1/namespaces/ns").verb == "get"
    assert rec("POST", "/api/v1/namespaces/ns/events").verb == "create"
    status = rec("PATCH", "/apis/amlops.io/v1alpha1/namespaces/ns/models/m/status")
    assert rbac_rules(status) == {("amlops.io", "models/status", "patch")}
    created = rec("PATCH", "/api/v1/namespaces/ns/secrets/s", status=201)
    assert rbac_rules(created) == {("", "secrets", "patch"), ("", "secrets", "create")}
    assert rbac_rules(rec("GET", "/apis")) == set()
    assert not rec("PATCH", "/api/v1/namespaces/ns/secrets/s", dryRun="All").write


def test_an_instance_lists_the_live_objects_by_the_labels_it_applies() -> None:
    options = instance_options("blue")
    labels = {"app.kubernetes.io/managed-by": "amlops", "amlops.io/instance": "blue"}
    assert options.labels == labels
    assert options.list_selector == "app.kubernetes.io/managed-by=amlops,amlops.io/instance=blue"
