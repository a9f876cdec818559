"""The local endpoint: one HTTP router per endpoint in front of its deployments' scoring servers.

It answers ``POST /score`` the way an Azure ML online endpoint does: it checks the bearer token
(an endpoint key; for ``aml_token``/``aad_token`` a key stands in for the token, see
``backend``), picks a deployment by the traffic weights (or the one named in the
``azureml-model-deployment`` header), forwards the request, and copies the given share of
requests to the ``mirror_traffic`` deployment, whose answers are dropped.

Picking is smooth weighted round robin rather than random: over every window of
``sum(weights)`` requests each deployment gets exactly its share, which makes the split exact
and testable, and mirroring uses the same kind of counter. Only deployments whose scoring
server answered its health check are routable; their share is spread over the others.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from amlops.backends.base import EndpointKeys

DEPLOYMENT_HEADER = "azureml-model-deployment"
_UPSTREAM_TIMEOUT_S = 60.0
_MAX_BODY = 16 * 1024 * 1024
# how often the server loop checks for stop(): stopping waits up to this long
_SHUTDOWN_POLL_S = 0.05


class WeightedChooser:
    """Smooth weighted round robin (as nginx does it): exact shares, no randomness."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = {name: w for name, w in sorted(weights.items()) if w > 0}
        self._current = dict.fromkeys(self._weights, 0)
        self._total = sum(self._weights.values())

    @property
    def weights(self) -> dict[str, int]:
        return dict(self._weights)

    def choose(self) -> str | None:
        if not self._weights:
            return None
        for name, weight in self._weights.items():
            self._current[name] += weight
        best = max(self._current, key=lambda n: self._current[n])
        self._current[best] -= self._total
        return best


class MirrorCounter:
    """Fires for exactly ``percent`` of every 100 calls, evenly spread."""

    def __init__(self, percent: int) -> None:
        self._percent = max(0, min(100, percent))
        self._acc = 0

    def fire(self) -> bool:
        self._acc += self._percent
        if self._acc >= 100:
            self._acc -= 100
            return True
        return False


@dataclass
class _Routes:
    targets: dict[str, int]  # deployment -> scoring server port (healthy ones only)
    chooser: WeightedChooser
    mirrors: dict[str, MirrorCounter]


@dataclass
class RouterStats:
    served: Counter[str] = field(default_factory=Counter)
    mirrored: Counter[str] = field(default_factory=Counter)
    rejected: int = 0


class Router:
    def __init__(self, endpoint: str, port: int, keys: EndpointKeys | None) -> None:
        self.endpoint = endpoint
        self._requested_port = port
        self.keys = keys  # None: no auth (auth_mode none); else the accepted bearer tokens
        self._lock = threading.Lock()
        self._routes = _Routes({}, WeightedChooser({}), {})
        self.stats = RouterStats()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        # mirrored copies go out in the background: the caller never waits for the mirror
        self._mirror_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mirror")

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen on 127.0.0.1:port (port 0 picks one); OSError if the port is taken."""
        server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), _Handler)
        server.daemon_threads = True
        server.router = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(_SHUTDOWN_POLL_S,),
            name=f"router-{self.endpoint}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._mirror_pool.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def update(
        self, targets: Mapping[str, int], traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        """Routable deployments and the weights; keeps the round-robin position when unchanged."""
        chooser = WeightedChooser({n: w for n, w in traffic.items() if n in targets})
        with self._lock:
            old = self._routes
            if old.targets == dict(targets) and old.chooser.weights == chooser.weights:
                chooser = old.chooser
            mirrors = {
                name: old.mirrors.get(name) or MirrorCounter(pct)
                for name, pct in mirror.items()
                if name in targets and pct > 0
            }
            self._routes = _Routes(dict(targets), chooser, mirrors)

    # -- called by the handler -------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if self.keys is None:
            return True
        if not header or not header.startswith("Bearer "):
            return False
        token = header.removeprefix("Bearer ").strip().encode()
        # compare against both keys every time: no early exit that times which one matched
        primary = hmac.compare_digest(token, self.keys.primary.encode())
        secondary = hmac.compare_digest(token, self.keys.secondary.encode())
        return primary or secondary

    def count_rejected(self) -> None:
        with self._lock:
            self.stats.rejected += 1

    def pick(self, wanted: str | None) -> tuple[str | None, int | None, list[tuple[str, int]]]:
        """(deployment, port, mirrors to copy to); (None, None, []) when nothing can answer."""
        with self._lock:
            routes = self._routes
            if wanted:
                port = routes.targets.get(wanted)
                if port is None:
                    return None, None, []
                self.stats.served[wanted] += 1
                return wanted, port, []
            name = routes.chooser.choose()
            if name is None:
                return None, None, []
            mirrors = [
                (m, routes.targets[m])
                for m, counter in routes.mirrors.items()
                if m != name and counter.fire()
            ]
            self.stats.served[name] += 1
            for m, _ in mirrors:
                self.stats.mirrored[m] += 1
            return name, routes.targets[name], mirrors

    def forward(self, port: int, body: bytes, content_type: str) -> tuple[int, bytes, str]:
        """POST to a scoring server over a kept-alive connection (one per thread and port)."""
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        for attempt in (1, 2):
            conn = conns.get(port)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_UPSTREAM_TIMEOUT_S)
                conns[port] = conn
            try:
                conn.request("POST", "/score", body, {"Content-Type": content_type})
                response = conn.getresponse()
                data = response.read()
                return response.status, data, response.getheader("Content-Type", "")
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                conn.close()
                conns.pop(port, None)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def mirror(self, copies: list[tuple[str, int]], body: bytes, content_type: str) -> None:
        for _, port in copies:
            self._mirror_pool.submit(self._mirror_one, port, body, content_type)

    def _mirror_one(self, port: int, body: bytes, content_type: str) -> None:
        with contextlib.suppress(OSError):  # a failing mirror must never affect live traffic
            self.forward(port, body, content_type)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    # headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (~40 ms per request on Linux)
    disable_nagle_algorithm = True
    server_version = "amlops-local-endpoint"

    @property
    def router(self) -> Router:
        router: Router = self.server.router  # type: ignore[attr-defined]
        return router

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Silent: the default writes to stderr (breaking the live table) and logs nothing
        we need; headers, which carry keys, are never logged."""

    def _send(
        self, status: int, body: bytes, content_type: str, deployment: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if deployment:
            self.send_header(DEPLOYMENT_HEADER, deployment)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def do_GET(self) -> None:
        if self.path != "/":
            self._error(404, "not found; POST /score")
            return
        self._send(200, b"Healthy", "text/plain")

    def do_POST(self) -> None:
        router = self.router
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            self._error(413, f"request body over {_MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/score":
            self._error(404, "not found; POST /score")
            return
        if not router.authorized(self.headers.get("Authorization")):
            router.count_rejected()
            self._error(401, "missing or wrong key: send 'Authorization: Bearer <endpoint key>'")
            return
        wanted = self.headers.get(DEPLOYMENT_HEADER)
        name, port, mirrors = router.pick(wanted)
        if name is None or port is None:
            if wanted:
                self._error(404, f"deployment {wanted!r} is not serving on this endpoint")
            else:
                self._error(503, f"no deployment of {router.endpoint} is serving traffic")
            return
        content_type = self.headers.get("Content-Type", "application/json")
        try:
            status, data, answer_type = router.forward(port, body, content_type)
        except OSError as exc:
            self._error(502, f"deployment {name} did not answer: {exc}")
            return
        router.mirror(mirrors, body, content_type)
        self._send(status, data, answer_type, deployment=name)
