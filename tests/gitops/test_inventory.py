"""``gitops.inventory`` (Flux's entries, diff, the prune-all guard) and ``gitops.apply``'s prune
decisions against a fake API server: only inventory objects that still carry the labels go."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from amlops.gitops.apply import (
    GIT_COMMIT,
    MANAGED_BY,
    REVISION,
    SyncOptions,
    object_path,
    stamp,
    sync,
    unchanged,
)
from amlops.gitops.inventory import (
    Entry,
    Inventory,
    InventoryError,
    PruneAllRefused,
    diff,
)

ORDER = ("Model", "Pipeline", "Endpoint")


def obj(kind: str, name: str, ns: str = "ns", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": {MANAGED_BY: "amlops"}},
        "spec": {"workspace": "w", **spec},
    }


def test_entries_use_flux_ids_and_round_trip() -> None:
    e = Entry.of(obj("Model", "tiny"))
    assert e.id == "ns_tiny_amlops.io_Model" and e.version == "v1alpha1"
    inv = Inventory.of([obj("Endpoint", "online"), obj("Model", "tiny"), obj("Model", "tiny")])
    assert len(inv) == 2
    assert inv.to_dict() == {
        "entries": [
            {"id": "ns_online_amlops.io_Endpoint", "v": "v1alpha1"},
            {"id": "ns_tiny_amlops.io_Model", "v": "v1alpha1"},
        ]
    }
    assert Inventory.from_json(inv.to_json()) == inv
    assert Inventory.from_dict(None) == Inventory()
    assert Entry.parse("_ns-1_v1_Namespace").namespace == ""  # cluster-scoped: no namespace
    for bad in ('{"entries": [{"id": "a_b"}]}', '{"entries": 3}', "[1]", "not json"):
        with pytest.raises(InventoryError):
            Inventory.from_json(bad)


def test_diff_prunes_what_left_in_reverse_apply_order() -> None:
    previous = Inventory.of(
        [obj("Model", "a"), obj("Model", "b"), obj("Endpoint", "e"), obj("Pipeline", "p")]
    )
    desired = Inventory.of([obj("Model", "a")])
    changes = diff(previous, desired, order=ORDER)
    assert [str(e) for e in changes.to_prune] == ["Endpoint ns/e", "Pipeline ns/p", "Model ns/b"]
    assert changes.to_apply == desired.entries
    assert diff(None, desired).to_prune == ()


def test_an_empty_revision_may_not_prune_everything_unless_allowed() -> None:
    previous = Inventory.of([obj("Model", "a"), obj("Endpoint", "e")])
    with pytest.raises(PruneAllRefused) as err:
        diff(previous, Inventory())
    assert err.value.count == 2 and err.value.reason == "PruneAllRefused"
    assert len(diff(previous, Inventory(), allow_empty=True).to_prune) == 2
    assert diff(Inventory(), Inventory()).to_prune == ()  # nothing applied yet: nothing refused


class FakeKube:
    """An API server in a dict: GET/DELETE by path, server-side apply by path."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.api = None
        self.field_manager = "amlops"
        self.managers: list[str] = []

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any] | None:
        if method == "DELETE":
            self.writes.append(("DELETE", path))
            self.store.pop(path, None)
            return {}
        assert method == "GET", method
        found = self.store.get(path)
        return copy.deepcopy(found) if found is not None else None

    def apply(self, path: str, body: dict[str, Any]) -> None:
        self.writes.append(("APPLY", path))
        self.managers.append(self.field_manager)
        self.store[path] = copy.deepcopy(body)

    def put(self, o: dict[str, Any]) -> dict[str, Any]:
        m = o["metadata"]
        self.store[object_path(o["kind"], m["namespace"], m["name"])] = o
        return o


NO_CLUSTER_WIDE = SyncOptions(crds=False, namespaces=False, labels={MANAGED_BY: "amlops"})


def stamped(o: dict[str, Any]) -> dict[str, Any]:
    return stamp(o, "c1")


def test_prune_needs_the_inventory_and_the_labels() -> None:
    kube = FakeKube()
    a, gone, taken, stranger = (stamped(obj("Model", n)) for n in ("a", "gone", "taken", "x"))
    for o in (a, gone, taken, stranger):
        kube.put(copy.deepcopy(o))
    kube.store[object_path("Model", "ns", "taken")]["metadata"]["labels"] = {}  # taken over
    previous = Inventory.of([a, gone, taken])  # "x" was never applied by this sync
    options = SyncOptions(**{**NO_CLUSTER_WIDE.__dict__, "prune": True})
    result = sync(kube, [a], options, previous)  # type: ignore[arg-type]
    assert [("DELETE", object_path("Model", "ns", "gone"))] == kube.writes
    assert result.pruned == 1 and result.applied == 0 and result.unchanged == 1
    assert result.written == 1
    assert result.inventory == Inventory.of([a])  # "taken" is no longer ours to remember
    assert object_path("Model", "ns", "x") in kube.store


def test_without_prune_stale_objects_stay_in_the_inventory() -> None:
    kube = FakeKube()
    a, b = stamped(obj("Model", "a")), stamped(obj("Model", "b"))
    kube.put(copy.deepcopy(a))
    kube.put(copy.deepcopy(b))
    result = sync(kube, [a], NO_CLUSTER_WIDE, Inventory.of([a, b]))  # type: ignore[arg-type]
    assert kube.writes == [] and result.inventory == Inventory.of([a, b])
    later = sync(kube, [a], SyncOptions(**{**NO_CLUSTER_WIDE.__dict__, "prune": True}),  # type: ignore[arg-type]
                 result.inventory)  # fmt: skip
    assert later.pruned == 1 and later.inventory == Inventory.of([a])


def test_retain_is_pruned_from_the_cluster_and_said_in_the_plan() -> None:
    kube = FakeKube()
    kept = kube.put(stamped(obj("Model", "kept", deletionPolicy="Retain")))
    a = stamped(obj("Model", "a"))
    options = SyncOptions(**{**NO_CLUSTER_WIDE.__dict__, "prune": True})
    result = sync(kube, [a], options, Inventory.of([kept]))  # type: ignore[arg-type]
    prune_lines = [what for verb, what in result.plan.lines if verb == "prune"]
    assert len(prune_lines) == 1 and "Retain" in prune_lines[0]
    assert object_path("Model", "ns", "kept") not in kube.store


def test_the_prune_all_guard_comes_before_any_write() -> None:
    kube = FakeKube()
    a = kube.put(stamped(obj("Model", "a")))
    options = SyncOptions(**{**NO_CLUSTER_WIDE.__dict__, "prune": True})
    with pytest.raises(PruneAllRefused):
        sync(kube, [], options, Inventory.of([a]))  # type: ignore[arg-type]
    assert kube.writes == []
    # without prune an empty revision is harmless: nothing is deleted
    assert sync(kube, [], NO_CLUSTER_WIDE, Inventory.of([a])).written == 0  # type: ignore[arg-type]


def test_a_new_revision_alone_rewrites_nothing() -> None:
    """As the GitSource handler syncs: its own field manager, the revision as a volatile
    annotation, GETs only."""
    kube = FakeKube()
    kube.field_manager = "amlops-gitsource"
    options = SyncOptions(**{**NO_CLUSTER_WIDE.__dict__, "volatile": (REVISION,), "prune": True})

    def revision(sha: str, **spec: Any) -> list[dict[str, Any]]:
        return [stamp(obj("Endpoint", "e", **spec), None, {REVISION: sha})]

    first = sync(kube, revision("sha-1"), options, None)  # type: ignore[arg-type]
    assert first.applied == 1 and first.written == 1
    assert kube.managers == ["amlops-gitsource"]
    live = kube.store[object_path("Endpoint", "ns", "e")]
    assert live["metadata"]["annotations"][REVISION] == "sha-1"
    again = sync(kube, revision("sha-2"), options, first.inventory)  # type: ignore[arg-type]
    assert again.written == 0 and again.unchanged == 1
    changed = sync(kube, revision("sha-3", suspend=True), options, first.inventory)  # type: ignore[arg-type]
    assert changed.applied == 1
    live = kube.store[object_path("Endpoint", "ns", "e")]
    assert live["metadata"]["annotations"][REVISION] == "sha-3"
    everything = SyncOptions(**{**options.__dict__, "allow_empty": True})
    assert sync(kube, [], everything, changed.inventory).pruned == 1  # type: ignore[arg-type]
    assert kube.store == {}


def test_unchanged_ignores_the_commit_and_volatile_annotations_only() -> None:
    desired = stamp(obj("Model", "m"), "c1", {REVISION: "r1"})
    live = copy.deepcopy(desired)
    assert unchanged(stamp(obj("Model", "m"), "c2", {REVISION: "r2"}), live, [REVISION])
    assert not unchanged(stamp(obj("Model", "m"), "c2", {REVISION: "r2"}), live)
    assert live["metadata"]["annotations"][GIT_COMMIT] == "c1"
