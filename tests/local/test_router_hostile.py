"""The endpoint router against clients that misbehave, and scoring servers only it can reach.

Most tests reproduce a way the thread-per-connection router could be held, crashed or made to
run a request twice (issue 8, items 8-11); the rest pin the limits that replaced it."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from amlops.backends.base import (
    DeploymentSpec,
    DeploymentState,
    EndpointSpec,
    ModelRef,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.router import Router, RouterLimits
from amlops.backends.local.scoring import UnixHTTPConnection

from .conftest import ROOT, WS
from .test_router import KEYS, Upstream

# short enough that a test waiting for them takes well under a second each
FAST = RouterLimits(
    max_body_bytes=1000, header_timeout_s=0.5, body_timeout_s=0.5, upstream_timeout_s=0.5
)
AUTH = b"Authorization: Bearer primary-key\r\n"


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short folder for sockets (as in test_router: fixtures are not imported)."""
    with tempfile.TemporaryDirectory(prefix="amlops-test-") as folder:
        yield Path(folder)


@pytest.fixture
def blue(sockets: Path) -> Iterator[Upstream]:
    upstream = Upstream("blue", sockets)
    yield upstream
    upstream.close()


def _router(upstream: Upstream, limits: RouterLimits = FAST) -> Router:
    router = Router("ep", 0, KEYS, limits)
    router.start()
    router.update({upstream.name: upstream.socket}, {upstream.name: 100}, {})
    return router


@pytest.fixture
def router(blue: Upstream) -> Iterator[Router]:
    r = _router(blue)
    yield r
    r.stop()


def _connect(router: Router, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", router.port), timeout=timeout)


def _status_line(sock: socket.socket) -> bytes:
    """The first line of the answer, without waiting for the connection to close."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the router closes the connection within ``seconds`` (reading what comes)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def _no_traceback(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert all("\n" not in r.getMessage() for r in caplog.records), caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_a_request_without_a_key_is_refused_before_its_body(router: Router) -> None:
    """The headers promise a terabyte and no body follows: the answer comes at once, from the
    headers, where a router that reads the body first waits for the client to give up."""
    with _connect(router) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        assert _status_line(sock) == b"HTTP/1.1 401 Unauthorized"
        assert time.monotonic() - started < 1.0
    assert router.stats.rejected == 1


def test_the_body_is_invited_only_after_the_key_check(router: Router) -> None:
    """``Expect: 100-continue``: a client without the key is never asked for its body."""
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
    with _connect(router) as sock:
        sock.sendall(head + b"\r\n")
        assert _status_line(sock) == b"HTTP/1.1 401 Unauthorized"
    with _connect(router) as sock:
        sock.sendall(head + AUTH + b"\r\n")
        assert _status_line(sock) == b"HTTP/1.1 100 Continue"
        sock.sendall(b"{}")
        assert _status_line(sock) == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("length", ["-1", "abc", "1, 2"])
def test_an_invalid_content_length_is_a_400_without_a_traceback(
    router: Router,
    length: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with _connect(router) as sock:
        sock.sendall(
            f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n".encode()
            + AUTH
            + b"\r\n{}"
        )
        assert b" 400 " in _status_line(sock)
        assert _closed_within(sock, 2)
    _no_traceback(caplog, capsys)


def test_a_malformed_chunked_body_is_a_400_without_a_traceback(
    router: Router,
    blue: Upstream,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with _connect(router) as sock:
        head = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + AUTH
        sock.sendall(head + b"\r\nzz\r\n{}\r\n0\r\n\r\n")
        assert b" 400 " in _status_line(sock)
    assert blue.bodies == []
    _no_traceback(caplog, capsys)


def test_a_post_without_a_length_is_411_and_an_oversized_one_413(router: Router) -> None:
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
        assert _status_line(sock) == b"HTTP/1.1 411 Length Required"
    with _connect(router) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n" + AUTH + b"\r\n"
        )
        assert _status_line(sock) == b"HTTP/1.1 413 Request Entity Too Large"
    # a chunked body has no length to check up front: it is counted as it arrives
    with _connect(router) as sock:
        head = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + AUTH
        chunk = b"200\r\n" + b"x" * 0x200 + b"\r\n"
        sock.sendall(head + b"\r\n" + chunk * 3)
        assert _status_line(sock) == b"HTTP/1.1 413 Request Entity Too Large"
    # within the limit, chunked is fine
    with _connect(router) as sock:
        sock.sendall(head + b"\r\n2\r\n{}\r\n0\r\n\r\n")
        assert _status_line(sock) == b"HTTP/1.1 200 OK"


def test_a_client_trickling_its_headers_is_cut_off(router: Router) -> None:
    """Slowloris: a byte of header every 100 ms keeps a connection alive as long as no
    deadline covers the headers as a whole."""
    with _connect(router) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            for byte in b"X-Slow: " + b"a" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _closed_within(sock, 1)
        assert time.monotonic() - started < FAST.header_timeout_s + 1.5


def test_a_body_shorter_than_its_length_times_out(router: Router, blue: Upstream) -> None:
    with _connect(router) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n" + AUTH + b"\r\n{}"
        )
        started = time.monotonic()
        assert _status_line(sock) == b"HTTP/1.1 408 Request Timeout"
        assert time.monotonic() - started < FAST.body_timeout_s + 1.5
    assert blue.bodies == []


@pytest.mark.slow
def test_a_post_that_timed_out_upstream_is_504_and_sent_once(sockets: Path) -> None:
    """A scoring request runs user code: one that outlived the timeout must not run again."""
    slow = Upstream("slow", sockets, delay=1.0)
    router = _router(slow)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        conn.request("POST", "/score", b'{"n": 1}', {"Authorization": "Bearer primary-key"})
        assert conn.getresponse().status == 504
        conn.close()
        time.sleep(1.5)  # room for a second copy to arrive, were one sent
        assert slow.bodies == [b'{"n": 1}']
    finally:
        router.stop()
        slow.close()


def test_a_deployment_that_does_not_answer_is_502(router: Router, sockets: Path) -> None:
    router.update({"gone": sockets / "gone.sock"}, {"gone": 100}, {})
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
    conn.request("POST", "/score", b"{}", {"Authorization": "Bearer primary-key"})
    response = conn.getresponse()
    assert response.status == 502 and b"gone" in response.read()


@pytest.mark.slow
def test_a_client_that_leaves_early_costs_one_line_and_no_traceback(
    sockets: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    slow = Upstream("slow", sockets, delay=0.3)
    router = _router(slow)
    try:
        with _connect(router) as sock:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + AUTH)
            sock.sendall(b"\r\n{}")
        deadline = time.monotonic() + 3
        while not slow.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # the answer comes back to a closed connection
        # leaving half-way through the body, too
        with _connect(router) as sock:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n" + AUTH)
            sock.sendall(b"\r\n{}")
        time.sleep(0.3)
    finally:
        router.stop()
        slow.close()
    left = [r.getMessage() for r in caplog.records if "client left" in r.getMessage()]
    assert len(left) == 2, caplog.text
    _no_traceback(caplog, capsys)


def test_requests_beyond_the_in_flight_bound_are_429(sockets: Path) -> None:
    slow = Upstream("slow", sockets, delay=0.5)
    router = _router(slow, RouterLimits(max_in_flight=2))
    try:

        def post(_: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
            conn.request("POST", "/score", b"{}", {"Authorization": "Bearer primary-key"})
            return conn.getresponse().status

        with ThreadPoolExecutor(4) as pool:
            statuses = Counter(pool.map(post, range(4)))
        assert statuses == {200: 2, 429: 2}
    finally:
        router.stop()
        slow.close()


def test_stop_does_not_wait_for_a_slow_deployment(sockets: Path) -> None:
    slow = Upstream("slow", sockets, delay=5)
    router = _router(slow, RouterLimits())
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    conn.request("POST", "/score", b"{}", {"Authorization": "Bearer primary-key"})
    time.sleep(0.2)
    started = time.monotonic()
    router.stop()
    assert time.monotonic() - started < 3
    assert not router.running
    # the port is free again: an endpoint whose auth mode changed restarts on it
    again = Router("ep", router.port, KEYS)
    again.start()
    again.stop()
    slow.close()


@pytest.mark.slow
def test_a_burst_from_50_threads_gets_every_answer(router: Router) -> None:
    """500 requests from 50 threads at once: a backlog of 5 dropped some of them."""

    def worker(n: int) -> Counter[int | str]:
        seen: Counter[int | str] = Counter()
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
        for _ in range(n):
            try:
                conn.request("POST", "/score", b"{}", {"Authorization": "Bearer primary-key"})
                response = conn.getresponse()
                response.read()
                seen[response.status] += 1
            except OSError as exc:
                seen[type(exc).__name__] += 1
                conn.close()
        conn.close()
        return seen

    barrier = threading.Barrier(50)

    def start_together(_: int) -> Counter[int | str]:
        barrier.wait()
        return worker(10)

    with ThreadPoolExecutor(50) as pool:
        total = sum(pool.map(start_together, range(50)), Counter[int | str]())
    assert total == {200: 500}


# -- the scoring servers: reachable through the router alone -------------------------------


def _listening_tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    inodes.add(fields[9])
    return inodes


def _socket_inodes_of_group(pgid: int) -> set[str]:
    inodes = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    return inodes


def _create(backend: LocalBackend) -> DeploymentState:
    model = backend.create_or_update_model_version(
        WS, ModelVersionSpec("slm-base", "1", ROOT / "manifests" / "assets" / "slm-base")
    )
    backend.create_or_update_endpoint(EndpointSpec(WS, "e", "key", {"d": 100}))
    spec = DeploymentSpec(
        WS,
        "e",
        "d",
        ModelRef(model.name, model.version),
        ROOT / "manifests" / "src" / "score",
        "score.py",
        "fp",
    )
    return backend.create_or_update_deployment(spec)


def _deploy(backend: LocalBackend) -> None:
    _create(backend)
    deadline = time.monotonic() + 60
    state = backend.list_deployments(WS, "e")[0]
    while state.provisioning_state is ProvisioningState.CREATING and time.monotonic() < deadline:
        time.sleep(0.2)
        state = backend.list_deployments(WS, "e")[0]
    assert state.provisioning_state is ProvisioningState.SUCCEEDED, state.message


@pytest.mark.slow
def test_a_scoring_server_listens_on_a_private_socket_only(backend: LocalBackend) -> None:
    _deploy(backend)
    path = backend.scoring.socket((WS, "e", "d"))
    assert path is not None and path.is_relative_to(backend.root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    record = backend.scoring._servers[(WS, "e", "d")].record
    assert not _socket_inodes_of_group(record.pid) & _listening_tcp_inodes()
    # no key on the socket: the router is the way in, and it asks for one
    direct = UnixHTTPConnection(path, timeout=10)
    direct.request("POST", "/score", b'{"prompt": "the", "max_tokens": 2}')
    assert direct.getresponse().status == 200
    assert backend.invoke(WS, "e", b'{"prompt": "the", "max_tokens": 2}').status == 200


@pytest.mark.slow
def test_a_state_dir_too_deep_for_a_socket_path_serves_from_a_private_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory(prefix="amlops-test-") as short:
        monkeypatch.setattr(tempfile, "tempdir", short)
        with LocalBackend(tmp_path / ("deep-" * 20) / "state") as backend:
            backend.start()
            _deploy(backend)
            path = backend.scoring.socket((WS, "e", "d"))
            assert path is not None and path.parent == Path(short) / f"amlops-{os.getuid()}"
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert backend.invoke(WS, "e", b'{"prompt": "the", "max_tokens": 2}').status == 200
        assert not path.exists()


def test_a_socket_folder_planted_by_someone_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback folder is in the shared temporary folder: a link planted there, leading to
    a folder of the planter's choice, must not get the socket."""
    with tempfile.TemporaryDirectory(prefix="amlops-test-") as short:
        monkeypatch.setattr(tempfile, "tempdir", short)
        (Path(short) / f"amlops-{os.getuid()}").symlink_to(tmp_path)
        with LocalBackend(tmp_path / ("deep-" * 20) / "state") as backend:
            backend.start()
            state = _create(backend)
        assert state.provisioning_state is ProvisioningState.FAILED
        assert "is not a folder of this user" in state.message
        assert not list(tmp_path.glob("*.sock"))


@pytest.mark.slow
def test_a_socket_path_someone_listens_on_is_taken_back(backend: LocalBackend) -> None:
    """What a port lost to a race was: a socket already at the path (left by a killed server,
    or squatted) is replaced, and requests reach the new server, not the squatter."""
    path = backend.scoring.socket_path((WS, "e", "d"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as squatter:
        squatter.bind(str(path))
        squatter.listen()
        _deploy(backend)
        # the squatter never answers: a request sent to it would time out
        assert backend.invoke(WS, "e", b'{"prompt": "the", "max_tokens": 2}').status == 200
