"""The endpoint router: exact traffic split, mirrored copies, key auth, health gating."""

from __future__ import annotations

import http.client
import itertools
import json
import socketserver
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import EndpointKeys, EndpointSpec
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.router import MirrorCounter, Router, WeightedChooser
from amlops.reconcile.endpoint import renormalize

from .conftest import WS


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    # as gunicorn's (2048), the listen backlog is above the router's connections to one
    # server: a Unix socket with a full backlog refuses connections instead of queueing them
    request_queue_size = 1024
    daemon_threads = True


class Upstream:
    """A stand-in scoring server on a Unix socket, as the real ones listen: it answers with its
    name, after ``delay`` seconds, and remembers what it got."""

    def __init__(self, name: str, folder: Path, delay: float = 0.0) -> None:
        self.name = name
        self.socket = folder / f"{name}.sock"
        self.bodies: list[bytes] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream.bodies.append(body)
                time.sleep(delay)
                answer = json.dumps({"from": upstream.name}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = _UnixServer(str(self.socket), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


KEYS = EndpointKeys("primary-key", "secondary-key")


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short folder for sockets: a socket's path must fit in 107 bytes, tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="amlops-test-") as folder:
        yield Path(folder)


@pytest.fixture
def upstreams(sockets: Path) -> Iterator[dict[str, Upstream]]:
    servers = {name: Upstream(name, sockets) for name in ("blue", "green")}
    yield servers
    for s in servers.values():
        s.close()


@pytest.fixture
def router(upstreams: dict[str, Upstream]) -> Iterator[Router]:
    r = Router("ep", 0, KEYS)
    r.start()
    r.update({n: u.socket for n, u in upstreams.items()}, {"blue": 90, "green": 10}, {})
    yield r
    r.stop()


def _post(
    port: int, body: bytes = b"{}", key: str | None = "primary-key", deployment: str = ""
) -> tuple[int, dict[str, Any], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if deployment:
        headers["azureml-model-deployment"] = deployment
    conn.request("POST", "/score", body, headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data, response.getheader("azureml-model-deployment") or ""


def test_weighted_choice_gives_exact_shares_in_every_window() -> None:
    chooser = WeightedChooser({"blue": 90, "green": 10})
    for _ in range(3):
        window = Counter(chooser.choose() for _ in range(100))
        assert window == {"blue": 90, "green": 10}


def test_weighted_choice_spreads_the_minority_evenly() -> None:
    chooser = WeightedChooser({"blue": 90, "green": 10})
    picks = [chooser.choose() for _ in range(100)]
    greens = [i for i, p in enumerate(picks) if p == "green"]
    assert [b - a for a, b in itertools.pairwise(greens)] == [10] * 9


def test_mirror_counter_fires_for_its_percentage() -> None:
    counter = MirrorCounter(10)
    assert sum(counter.fire() for _ in range(1000)) == 100


def test_renormalize_moves_a_gated_share_to_the_healthy_ones() -> None:
    assert renormalize({"blue": 0, "green": 10}) == {"blue": 0, "green": 100}
    assert renormalize({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert renormalize({"a": 0, "b": 0}) == {"a": 0, "b": 0}


def test_requests_split_by_weight_through_http(
    router: Router, upstreams: dict[str, Upstream]
) -> None:
    answers: Counter[str] = Counter()
    for _ in range(50):
        status, body, deployment = _post(router.port)
        assert status == 200 and body["from"] == deployment
        answers[deployment] += 1
    assert answers == {"blue": 45, "green": 5}


def test_mirror_traffic_copies_requests_and_drops_the_answers(
    router: Router, upstreams: dict[str, Upstream]
) -> None:
    targets = {n: u.socket for n, u in upstreams.items()}
    router.update(targets, {"blue": 100, "green": 0}, {"green": 20})
    for i in range(20):
        status, body, _ = _post(router.port, json.dumps({"i": i}).encode())
        assert status == 200 and body["from"] == "blue"
    deadline = time.monotonic() + 5
    while len(upstreams["green"].bodies) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(upstreams["blue"].bodies) == 20
    assert len(upstreams["green"].bodies) == 4
    assert set(upstreams["green"].bodies) <= set(upstreams["blue"].bodies)


def test_key_auth(router: Router) -> None:
    assert _post(router.port, key=None)[0] == 401
    assert _post(router.port, key="wrong")[0] == 401
    assert _post(router.port, key="secondary-key")[0] == 200
    assert router.stats.rejected == 2


def test_a_deployment_can_be_asked_for_by_name(router: Router) -> None:
    assert _post(router.port, deployment="green")[2] == "green"
    status, body, _ = _post(router.port, deployment="purple")
    assert status == 404 and "purple" in body["error"]


def test_only_healthy_deployments_get_traffic(
    router: Router, upstreams: dict[str, Upstream]
) -> None:
    router.update({"green": upstreams["green"].socket}, {"blue": 90, "green": 10}, {})
    assert {_post(router.port)[2] for _ in range(20)} == {"green"}
    router.update({}, {"blue": 90, "green": 10}, {})
    status, body, _ = _post(router.port)
    assert status == 503 and "no deployment" in body["error"]


@pytest.mark.parametrize("auth_mode", ["key", "aml_token", "aad_token"])
def test_every_auth_mode_asks_for_a_bearer_token(backend: LocalBackend, auth_mode: str) -> None:
    """aml_token and aad_token are emulated with the endpoint's key as a static token."""
    state = backend.create_or_update_endpoint(EndpointSpec(WS, "e", auth_mode, {}))
    port = int(state.scoring_uri.split(":")[2].split("/")[0])
    keys = backend.get_endpoint_keys(WS, "e")
    assert _post(port, key=None)[0] == 401
    assert _post(port, key="wrong")[0] == 401
    # past the token check: nothing is deployed, so nothing answers
    assert _post(port, key=keys.secondary)[0] == 503
    assert backend.invoke(WS, "e", b"{}").status == 503  # `amlops invoke` sends the token
