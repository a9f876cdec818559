"""A scoring server killed behind the backend's back (issue 13, D9): the watcher notices within
a second and starts it again, so the endpoint answers again in seconds with no reconcile (the
operator's drift interval is minutes); while nothing listens on a deployment's socket, the
router sends its share to the deployments still serving."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlops.backends.base import (
    DeploymentSpec,
    EndpointSpec,
    ModelRef,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.backends.local import procs
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.router import Router
from amlops.backends.local.scoring import RESTART_DELAYS_S

from .conftest import SCORE, WS, script
from .test_router import KEYS, Upstream, _post

pytestmark = pytest.mark.slow

# well under the operator's default drift interval (300 s), with room for a loaded machine:
# azmlinfsrv itself takes a few seconds to start
RECOVERY_S = 20.0


def _serving(backend: LocalBackend, tmp_path: Path, traffic: dict[str, int]) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "answer.json").write_text(json.dumps({"answer": 42}))
    model = backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", model_dir))
    code = tmp_path / "score"
    script(code, "score.py", SCORE)
    backend.create_or_update_endpoint(EndpointSpec(WS, "e", "key", traffic))
    for name in traffic:
        backend.create_or_update_deployment(
            DeploymentSpec(
                WS, "e", name, ModelRef(model.name, model.version), code, "score.py", "fp"
            )
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = backend.list_deployments(WS, "e")
        if all(s.provisioning_state is ProvisioningState.SUCCEEDED for s in states):
            return
        time.sleep(0.2)
    raise AssertionError(f"not serving: {backend.list_deployments(WS, 'e')}")


def _pid_file(backend: LocalBackend, deployment: str) -> Path:
    return backend.root / "deployments" / WS / "e" / deployment / "server.pid"


def _row_state(backend: LocalBackend, deployment: str) -> str:
    """As recorded, without looking at the server (which would move the state on itself)."""
    rows = {r["name"]: r for r in backend.catalog.list_deployment_rows(WS, "e")}
    return str(rows[deployment]["state"])


def test_a_killed_scoring_server_is_started_again_within_seconds_without_a_reconcile(
    backend: LocalBackend, tmp_path: Path
) -> None:
    _serving(backend, tmp_path, {"d": 100})
    assert backend.invoke(WS, "e", b"{}").status == 200
    killed = procs.read_pid_file(_pid_file(backend, "d"))
    assert killed is not None

    os.kill(killed.pid, signal.SIGKILL)  # behind the backend's back: no reconcile follows
    started = time.monotonic()
    answers: list[int] = []
    restarted = None
    while time.monotonic() - started < RECOVERY_S:
        # gunicorn's workers may answer for a moment after their master died: what counts is
        # an answer from the server started again
        restarted = procs.read_pid_file(_pid_file(backend, "d"))
        answer = backend.invoke(WS, "e", b"{}")
        answers.append(answer.status)
        if restarted is not None and restarted.pid != killed.pid and answer.status == 200:
            break
        time.sleep(0.2)
    recovered_in = time.monotonic() - started

    assert restarted is not None and restarted.pid != killed.pid, "not started again"
    assert answers[-1] == 200, f"no answer within {RECOVERY_S:g} s: {answers}"
    assert json.loads(backend.invoke(WS, "e", b"{}").body) == {"answer": 42}
    assert not procs.is_alive(killed)
    # the watcher, not a reconcile, moves the deployment back to serving (on its next look)
    deadline = time.monotonic() + 5
    while _row_state(backend, "d") != ProvisioningState.SUCCEEDED:
        assert time.monotonic() < deadline, _row_state(backend, "d")
        time.sleep(0.1)
    assert recovered_in < RECOVERY_S


def test_a_scoring_server_dying_again_soon_after_its_restart_waits_longer_each_time(
    backend: LocalBackend, tmp_path: Path
) -> None:
    _serving(backend, tmp_path, {"d": 100})
    pids: list[int] = []
    gaps = []
    for _ in range(2):  # the second death is soon after the first restart: the delay grows
        record = procs.read_pid_file(_pid_file(backend, "d"))
        assert record is not None
        pids.append(record.pid)
        os.kill(record.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        deadline = killed_at + RECOVERY_S
        while time.monotonic() < deadline:
            again = procs.read_pid_file(_pid_file(backend, "d"))
            if again is not None and again.pid not in pids:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("not started again")
        gaps.append(time.monotonic() - killed_at)
        while _row_state(backend, "d") != ProvisioningState.SUCCEEDED:
            assert time.monotonic() < deadline, _row_state(backend, "d")
            time.sleep(0.1)
    assert backend.scoring._servers[(WS, "e", "d")].restarts == 2
    assert gaps[1] >= RESTART_DELAYS_S[1] > RESTART_DELAYS_S[0]


@pytest.fixture
def half_down() -> Iterator[Router]:
    """blue (90 %) has died: its socket file is there, nothing accepts on it."""
    # a short folder: a socket's path must fit in 107 bytes, tmp_path may not
    with tempfile.TemporaryDirectory(prefix="amlops-test-") as folder:
        upstreams = {name: Upstream(name, Path(folder)) for name in ("blue", "green")}
        upstreams["blue"].close()
        r = Router("ep", 0, KEYS)
        r.start()
        r.update({n: u.socket for n, u in upstreams.items()}, {"blue": 90, "green": 10}, {})
        yield r
        r.stop()
        upstreams["green"].close()


def test_a_deployment_that_accepts_no_connection_gives_its_share_to_the_others(
    half_down: Router,
) -> None:
    answers = [_post(half_down.port) for _ in range(20)]
    assert {(status, body["from"], name) for status, body, name in answers} == {
        (200, "green", "green")
    }
    assert half_down.stats.served["blue"] == 0 and half_down.stats.served["green"] == 20


def test_a_deployment_asked_for_by_name_that_accepts_no_connection_is_a_502(
    half_down: Router,
) -> None:
    status, body, _ = _post(half_down.port, deployment="blue")
    assert status == 502 and "deployment blue did not answer" in body["error"]
