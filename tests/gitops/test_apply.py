"""``gitops.apply`` when something is in the way: a failure midway says what it wrote, an object
another owner holds is refused before any write, an admission denial of a DELETE is not retried,
and the objects left as they were are reported (their revisions are still in use)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from amlops.gitops.apply import (
    MANAGED_BY,
    REVISION,
    ApplyError,
    Kube,
    SyncOptions,
    object_path,
    stamp,
    sync,
)
from amlops.gitops.inventory import Entry, Inventory
from tests.gitops.test_inventory import FakeKube, obj

OPTIONS = SyncOptions(
    crds=False, namespaces=False, labels={MANAGED_BY: "amlops"}, volatile=(REVISION,)
)


def stamped(o: dict[str, Any], revision: str = "c1") -> dict[str, Any]:
    return stamp(o, None, {REVISION: revision})


class FailingKube(FakeKube):
    """Refuses to apply the objects named in ``refuse`` (a 422 from the API server)."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse

    def apply(self, path: str, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] in self.refuse:
            raise ApplyError(f"PATCH {path}: 422 invalid")
        super().apply(path, body)


def test_a_failure_midway_carries_the_objects_already_written() -> None:
    kube = FailingKube({"b"})
    objects = [stamped(obj("Model", n)) for n in ("a", "b", "c")]
    with pytest.raises(ApplyError) as err:
        sync(kube, objects, OPTIONS)  # type: ignore[arg-type]
    assert err.value.applied == (Entry.of(objects[0]),)
    assert kube.writes == [("APPLY", object_path("Model", "ns", "a"))]


def test_an_object_another_owner_holds_is_refused_before_any_write() -> None:
    kube = FakeKube()
    mine, theirs = stamped(obj("Model", "mine")), stamped(obj("Model", "theirs"))
    live = copy.deepcopy(theirs)
    live["metadata"]["labels"]["owner"] = "someone"
    kube.put(live)

    def claimed_by(current: dict[str, Any]) -> str | None:
        return (current["metadata"].get("labels") or {}).get("owner")

    options = SyncOptions(**{**OPTIONS.__dict__, "claimed_by": claimed_by})
    with pytest.raises(ApplyError, match=r"Model ns/theirs \(held by someone\)") as err:
        sync(kube, [mine, theirs], options)  # type: ignore[arg-type]
    assert kube.writes == [] and err.value.applied == ()
    # an object nobody else holds (or that is not there yet) is applied as before
    result = sync(kube, [mine], options)  # type: ignore[arg-type]
    assert result.applied == 1


def test_unchanged_and_kept_objects_are_reported_as_untouched() -> None:
    kube = FakeKube()
    old, stale = stamped(obj("Model", "old"), "c0"), stamped(obj("Model", "stale"), "c0")
    kube.put(copy.deepcopy(old))
    kube.put(copy.deepcopy(stale))
    fresh = stamped(obj("Model", "old"), "c2")  # same body, a new revision: not rewritten
    new = stamped(obj("Model", "new"), "c2")
    result = sync(kube, [fresh, new], OPTIONS, Inventory.of([old, stale]))  # type: ignore[arg-type]
    revisions = {
        (o["metadata"]["name"], o["metadata"]["annotations"][REVISION]) for o in result.untouched
    }
    assert revisions == {("old", "c0"), ("stale", "c0")}  # without prune "stale" stays


class _Response:
    def __init__(self, data: bytes) -> None:
        self.data = data


class ScriptedApi:
    """``call_api`` answering each request with the next status of ``statuses``."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls: list[str] = []

    def call_api(self, path: str, method: str, **_: Any) -> _Response:
        self.calls.append(method)
        status = self.statuses.pop(0)
        if status >= 400:
            exc = ApiException(status=status, reason="Conflict")
            exc.body = json.dumps({"message": f"denied {status}"})
            raise exc
        return _Response(b"{}")


def test_a_409_on_delete_is_an_answer_and_on_apply_a_conflict_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("amlops.gitops.apply.time.sleep", lambda _: None)
    api = ScriptedApi([409, 200])
    with pytest.raises(ApplyError, match=r"DELETE .*409 denied 409"):
        Kube(api).request("DELETE", object_path("Model", "ns", "m"))
    assert api.calls == ["DELETE"]  # an admission denial: asked once
    api = ScriptedApi([409, 200])
    assert Kube(api).request("PATCH", object_path("Model", "ns", "m"), body={}) == {}
    assert api.calls == ["PATCH", "PATCH"]
