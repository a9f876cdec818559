"""Drift checks by listing (amlops.backends.azureml.snapshots): one list per kind per cycle,
changes behind the back seen after the TTL, the backend's own writes read back with a GET, and
a 429 holding the whole workspace back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from amlops.backends.azureml import AzureMLBackend
from amlops.backends.azureml.snapshots import Snapshots
from amlops.backends.base import (
    TAG_OWNER,
    EndpointSpec,
    ModelRef,
    ModelVersionSpec,
    ServerlessEndpointSpec,
)
from tests.azure.backend_support import OWNER, WS, make_backend, model_dir
from tests.azure.conftest import AzureEnv

pytestmark = pytest.mark.slow

TTL = 30.0
ENDPOINTS = ("ep-a", "ep-b", "ep-c")
VERSIONS = ("1", "2", "3", "4")


class Clock:
    """The snapshots' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _backend(azure_env: AzureEnv, clock: Clock) -> AzureMLBackend:
    backend = make_backend(azure_env, model_cache_s=0.0, snapshot_ttl_s=TTL)
    backend.snapshots = Snapshots(TTL, clock=clock)
    return backend


def _populate(azure_env: AzureEnv, tmp_path: Path) -> None:
    """Four versions of model ``m`` and three endpoints, made by another backend."""
    writer = make_backend(azure_env)
    for v in VERSIONS:
        folder = model_dir(tmp_path, f"m{v}", f"weights {v}".encode())
        writer.create_or_update_model_version(WS, ModelVersionSpec("m", v, folder))
    for name in ENDPOINTS:
        writer.create_or_update_endpoint(EndpointSpec(WS, name, "key", {}))
    for name in ENDPOINTS:  # created at once (duration 0): settled by the next request
        found = writer.get_endpoint(WS, name)
        assert found is not None


def _cycle(backend: AzureMLBackend) -> None:
    """What a drift cycle reads: every version, every endpoint and its deployments."""
    for v in VERSIONS:
        found = backend.get_model_version(WS, "m", v)
        assert found is not None and found.version == v
    for name in ENDPOINTS:
        endpoint = backend.get_endpoint(WS, name)
        assert endpoint is not None and endpoint.name == name
        assert backend.list_deployments(WS, name) == []


def test_a_drift_cycle_costs_one_list_per_kind(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    _populate(azure_env, tmp_path)
    clock = Clock()
    backend = _backend(azure_env, clock)
    _cycle(backend)  # the first object of a kind is read with a GET: a list pays from two
    clock.now += TTL + 1  # the next drift cycle, the snapshots expired
    fake.log.reset()
    _cycle(backend)
    ops = fake.log.by_operation()
    assert ops.get("ModelVersions_List") == 1, ops
    assert ops.get("OnlineEndpoints_List") == 1, ops
    assert ops.get("OnlineDeployments_List") == len(ENDPOINTS), ops  # one per endpoint
    assert "ModelVersions_Get" not in ops and "OnlineEndpoints_Get" not in ops, ops
    assert fake.log.writes == 0
    assert fake.log.reads == 1 + 1 + len(ENDPOINTS)

    fake.log.reset()  # within the TTL: the same snapshots, no request at all
    _cycle(backend)
    assert fake.log.records == []


def test_serverless_endpoints_are_read_from_one_list(azure_env: AzureEnv) -> None:
    fake = azure_env.fake
    model_id = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct"
    ref = ModelRef("Phi-3-mini-4k-instruct", None, "azureml")
    names = ("sl-a", "sl-b", "sl-c")
    writer = make_backend(azure_env)
    for name in names:
        writer.create_or_update_serverless_endpoint(ServerlessEndpointSpec(WS, name, ref, model_id))
    clock = Clock()
    backend = _backend(azure_env, clock)
    for _ in range(2):  # the first read of the kind is a GET; then the list's
        clock.now += TTL + 1
        fake.log.reset()
        for name in names:
            found = backend.get_serverless_endpoint(WS, name)
            assert found is not None and found.model_id == model_id
    assert fake.log.by_operation() == {"ServerlessEndpoints_List": 1}


def test_a_change_behind_the_back_is_seen_after_the_ttl(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    _populate(azure_env, tmp_path)
    clock = Clock()
    backend = _backend(azure_env, clock)
    _cycle(backend)
    _cycle(backend)  # snapshots taken
    rid = fake.state.resource_id(azure_env.workspace, "onlineEndpoints", "ep-b")
    with fake.state.locked() as state:
        state.resources[rid.lower()]["tags"]["team"] = "portal"
    clock.now += TTL / 2
    before = backend.get_endpoint(WS, "ep-b")
    assert before is not None and "team" not in before.tags  # within the TTL: the snapshot's
    clock.now += TTL / 2 + 1
    fake.log.reset()
    after = backend.get_endpoint(WS, "ep-b")
    assert after is not None and after.tags.get("team") == "portal"
    assert fake.log.by_operation() == {"OnlineEndpoints_List": 1}


def test_the_backends_own_write_is_read_back_with_a_get(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    _populate(azure_env, tmp_path)
    clock = Clock()
    backend = make_backend(azure_env, owner=OWNER, model_cache_s=0.0)
    backend.snapshots = Snapshots(TTL, clock=clock)
    _cycle(backend)
    _cycle(backend)  # snapshots taken, fresh for TTL

    backend.delete_model_version(WS, "m", "2")
    backend.create_or_update_endpoint(EndpointSpec(WS, "ep-a", "key", {}, tags={"v": "2"}))
    backend._pollers[(WS, "ep-a")].result(10)  # the SDK's poller reads the endpoint too
    fake.log.reset()
    assert backend.get_model_version(WS, "m", "2") is None  # not the snapshot's "exists"
    assert backend.get_model_version(WS, "m", "3") is not None  # not written: the snapshot
    endpoint = backend.get_endpoint(WS, "ep-a")
    assert endpoint is not None and endpoint.tags.get("v") == "2"
    assert endpoint.tags[TAG_OWNER] == OWNER
    unchanged = backend.get_endpoint(WS, "ep-b")
    assert unchanged is not None
    ops = fake.log.by_operation()
    assert ops == {"ModelVersions_Get": 1, "OnlineEndpoints_Get": 1}, ops


def test_a_429_on_a_list_holds_back_the_workspaces_other_calls(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    _populate(azure_env, tmp_path)
    clock = Clock()
    backend = _backend(azure_env, clock)
    _cycle(backend)
    clock.now += TTL + 1
    fake.log.reset()
    hold = 2.0
    fake.faults.inject("OnlineEndpoints_List", 429, retry_after=hold, times=1)

    errors: list[BaseException] = []

    def observe() -> None:
        try:
            assert backend.get_endpoint(WS, "ep-a") is not None
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    lister = threading.Thread(target=observe)
    lister.start()
    deadline = time.monotonic() + 10
    while backend.gate.remaining(WS) <= 0:  # the 429 has reached the backend
        assert time.monotonic() < deadline, fake.log.by_operation()
        time.sleep(0.01)
    # another object's read, in parallel: a model version (its name's list)
    assert backend.get_model_version(WS, "m", "1") is not None
    lister.join(10)
    assert not errors, errors
    throttled = fake.log.find("OnlineEndpoints_List", status=429)
    assert len(throttled) == 1
    others = [r for r in fake.log.records if r.seq > throttled[0].seq]
    assert {r.operation_id for r in others} >= {"OnlineEndpoints_List", "ModelVersions_List"}
    for r in others:  # nothing went to the workspace before the Retry-After ran out
        assert r.monotonic - throttled[0].monotonic >= hold - 0.05, r
