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

The router faces any local process, so it is built to be hostile-client proof (see
``RouterLimits``): it runs on aiohttp, one event loop in its own thread, so a slow or
malicious client costs a coroutine and a socket, not a thread. The key is checked from the
headers, before a byte of the body is read (and before ``100 Continue`` invites it); a request
must deliver its headers and its body within a deadline; its length is checked before it is
read. Scoring servers listen on Unix sockets (see ``scoring``); each gets one pooled client
session. A request that may have reached a scoring server is never sent again: scoring runs
user code, which need not be idempotent. One that certainly did not (nothing accepted the
connection: a server that died and is being started again) goes to another deployment, if one
is serving, rather than failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from amlops.backends.base import EndpointKeys

DEPLOYMENT_HEADER = "azureml-model-deployment"
# after an answer sent before the body was read (401, 413), how long the router keeps reading
# and dropping what the client still sends: closing at once would make the kernel reset the
# connection, and the client would see the reset instead of the answer
_LINGER_S = 2.0
# how long stop() lets requests in flight finish before their connections are closed
_STOP_GRACE_S = 1.0
_JSON = "application/json"
_SCORE = "http://localhost/score"  # the host is a formality: the connector names the socket

log = logging.getLogger("amlops.router")


@dataclass(frozen=True)
class RouterLimits:
    """What one client can hold of the router, and how long the router waits for anyone."""

    max_body_bytes: int = 16 * 1024 * 1024
    # a connection must finish sending a request's headers this long after it opened (or after
    # its previous answer); an idle kept-alive connection is closed after as long
    header_timeout_s: float = 30.0
    body_timeout_s: float = 30.0  # to receive the whole body, once the headers are in
    upstream_timeout_s: float = 60.0  # for the scoring server's whole answer
    # requests past the key check at once; more get 429, as an Azure endpoint answers when
    # its request queue is full
    max_in_flight: int = 256
    max_mirrors_in_flight: int = 32  # mirrored copies beyond this are dropped, not queued
    backlog: int = 1024  # connections the kernel queues before the router accepts them


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
    targets: dict[str, Path]  # deployment -> its scoring server's socket (healthy ones only)
    chooser: WeightedChooser
    mirrors: dict[str, MirrorCounter]


@dataclass
class RouterStats:
    served: Counter[str] = field(default_factory=Counter)
    mirrored: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    mirrors_dropped: int = 0


class _OneLineLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's server writes to.

    aiohttp logs a malformed request (an invalid ``Content-Length``, an oversized header) with
    ``logger.exception``: a traceback in ``amlops up``'s console for a request it answered
    400, where nothing failed but the client. Those become one line; anything else, a fault of
    the router itself, keeps its traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            # the parser's message draws a caret under the bad byte, on lines of their own
            detail = " ".join(line.strip() for line in exc_info.message.splitlines())
            self.info(f"{msg}: %s", *args, detail)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)


class Router:
    def __init__(
        self,
        endpoint: str,
        port: int,
        keys: EndpointKeys | None,
        limits: RouterLimits | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._requested_port = port
        self.keys = keys  # None: no auth (auth_mode none); else the accepted bearer tokens
        self.limits = limits or RouterLimits()
        self._lock = threading.Lock()  # _routes and stats: update() runs in the caller's thread
        self._routes = _Routes({}, WeightedChooser({}), {})
        self.stats = RouterStats()
        self._sock: socket.socket | None = None
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        # the rest lives in the router's thread, touched by its event loop only
        self._sessions: dict[Path, aiohttp.ClientSession] = {}
        self._in_flight = 0
        self._mirrors: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port listened on (the one asked for until started; kept after stop())."""
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen on 127.0.0.1:port (port 0 picks one); OSError if the port is taken."""
        # bound here, in the caller's thread, so that a taken port raises to the caller
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._requested_port))
            sock.listen(self.limits.backlog)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready, failure), name=f"router-{self.endpoint}"
        )
        self._thread.daemon = True
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        if self._sock is not None:
            self._sock.close()

    def update(
        self, targets: Mapping[str, Path], traffic: Mapping[str, int], mirror: Mapping[str, int]
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

    def pick(
        self, wanted: str | None, avoid: frozenset[str] = frozenset()
    ) -> tuple[str | None, Path | None, list[tuple[str, Path]]]:
        """(deployment, socket, mirrors to copy to); (None, None, []) when nothing can answer.
        ``avoid``: deployments that just refused a connection."""
        with self._lock:
            routes = self._routes
            if wanted:
                target = routes.targets.get(wanted)
                if target is None or wanted in avoid:
                    return None, None, []
                self.stats.served[wanted] += 1
                return wanted, target, []
            name = routes.chooser.choose()
            if name in avoid:  # the heaviest of the others, leaving the turns as they are
                weights = routes.chooser.weights
                others = [n for n in weights if n not in avoid]
                name = max(others, key=lambda n: weights[n]) if others else None
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

    # -- the router's thread ---------------------------------------------------------------

    def _run(
        self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        # asyncio.Runner, as asyncio.run(): on the way out it cancels and awaits what is left
        # (connections lingering after an early answer), which a bare loop.close() would
        # report, one "Task was destroyed but it is pending!" each, on stderr
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(self._serve(sock, ready))
            except Exception as exc:
                if ready.is_set():  # it was serving: `running` turns False, reconcile restarts it
                    log.exception("%s: the router stopped", self.endpoint)
                else:  # handed to start(), which raises it in the caller
                    failure.append(exc)
            finally:
                ready.set()
                self._loop = None

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = web.Server(
            self._handle,
            logger=_OneLineLog(log, {}),
            access_log=None,  # headers carry keys; and nothing is to reach `up`'s console
            keepalive_timeout=self.limits.header_timeout_s,
            lingering_time=_LINGER_S,
        )
        runner = web.ServerRunner(server, shutdown_timeout=_STOP_GRACE_S)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, backlog=self.limits.backlog).start()
            ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            for task in list(self._mirrors):
                task.cancel()
            for session in self._sessions.values():
                await session.close()
            self._sessions.clear()

    def _session(self, target: Path) -> aiohttp.ClientSession:
        """The pooled, kept-alive client of one scoring server."""
        session = self._sessions.get(target)
        if session is None:
            # at most this many connections at once, well under gunicorn's listen backlog
            # (2048): a Unix socket whose backlog is full fails a connect instead of queueing it
            limit = self.limits.max_in_flight + self.limits.max_mirrors_in_flight
            session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(target), limit=limit),
                timeout=aiohttp.ClientTimeout(total=self.limits.upstream_timeout_s),
                auto_decompress=False,  # the answer goes to the client as the server wrote it
                # one session serves every client: a cookie one answer sets must not be sent
                # along with the next client's request
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[target] = session
        return session

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/score":
            if request.method == "GET" and request.path == "/":
                return web.Response(text="Healthy")
            return _error(request, 404, "not found; POST /score")
        if request.method != "POST":
            return _error(request, 405, "POST /score", headers={"Allow": "POST"})
        if not self.authorized(request.headers.get("Authorization")):
            with self._lock:
                self.stats.rejected += 1
            return _error(
                request, 401, "missing or wrong key: send 'Authorization: Bearer <endpoint key>'"
            )
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        length = request.content_length  # a malformed one was answered 400 by the parser
        if length is None and not chunked:
            return _error(request, 411, "send the body with a Content-Length")
        if length is not None and length > self.limits.max_body_bytes:
            return _error(request, 413, f"request body over {self.limits.max_body_bytes} bytes")
        if self._in_flight >= self.limits.max_in_flight:
            return _error(
                request, 429, "too many requests in flight; retry", headers={"Retry-After": "1"}
            )
        self._in_flight += 1
        try:
            return await self._score(request)
        finally:
            self._in_flight -= 1

    async def _score(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Expect", "").lower() == "100-continue":
            # only now, with the key checked, is the client invited to send the body
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                body = await _read_body(request.content, self.limits.max_body_bytes)
        except TimeoutError:
            return _error(
                request, 408, f"body not received within {self.limits.body_timeout_s:g} s"
            )
        except _TooLarge:
            return _error(request, 413, f"request body over {self.limits.max_body_bytes} bytes")
        except ConnectionError as exc:  # nobody is left to answer: one line, no traceback
            log.info("%s: client left while sending its request: %s", self.endpoint, exc)
            return _error(request, 400, "incomplete request body")
        except (HttpProcessingError, web.RequestPayloadError) as exc:  # e.g. broken chunking
            log.info("%s: malformed request body: %s", self.endpoint, exc)
            return _error(request, 400, "malformed request body")
        wanted = request.headers.get(DEPLOYMENT_HEADER)
        content_type = request.headers.get("Content-Type", _JSON)
        refused: dict[str, str] = {}  # deployments whose server accepted no connection
        while True:
            name, target, mirrors = self.pick(wanted, frozenset(refused))
            if name is None or target is None:
                if refused:
                    said = (f"deployment {n} did not answer: {e}" for n, e in refused.items())
                    return _error(request, 502, "; ".join(said))
                if wanted:
                    return _error(
                        request, 404, f"deployment {wanted!r} is not serving on this endpoint"
                    )
                return _error(request, 503, f"no deployment of {self.endpoint} is serving traffic")
            try:
                status, data, answer_type = await self._forward(target, body, content_type)
                break
            except aiohttp.ClientConnectorError as exc:  # never reached it: another may answer
                log.info("%s: deployment %s refused the connection: %s", self.endpoint, name, exc)
                with self._lock:
                    self.stats.served[name] -= 1
                refused[name] = str(exc)
                continue
            except TimeoutError:
                log.info("%s: deployment %s did not answer in time", self.endpoint, name)
                limit = self.limits.upstream_timeout_s
                return _error(request, 504, f"deployment {name} did not answer within {limit:g} s")
            except (aiohttp.ClientError, OSError) as exc:
                log.info("%s: deployment %s did not answer: %s", self.endpoint, name, exc)
                return _error(request, 502, f"deployment {name} did not answer: {exc}")
        for _, mirror in mirrors:
            self._mirror(mirror, body, content_type)
        if request.transport is None or request.transport.is_closing():
            log.info("%s: client left before deployment %s answered", self.endpoint, name)
        return web.Response(
            status=status,
            body=data,
            headers={
                "Content-Type": answer_type or "application/octet-stream",
                DEPLOYMENT_HEADER: name,
            },
        )

    async def _forward(
        self, target: Path, body: bytes, content_type: str
    ) -> tuple[int, bytes, str]:
        """POST once: aiohttp itself re-sends only idempotent methods, and nor does this."""
        async with self._session(target).post(
            _SCORE, data=body, headers={"Content-Type": content_type}
        ) as response:
            data = await response.read()
            return response.status, data, response.headers.get("Content-Type", "")

    def _mirror(self, target: Path, body: bytes, content_type: str) -> None:
        """Send a copy in the background: the caller never waits for the mirror."""
        if len(self._mirrors) >= self.limits.max_mirrors_in_flight:
            with self._lock:
                self.stats.mirrors_dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._mirror_one(target, body, content_type))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror_one(self, target: Path, body: bytes, content_type: str) -> None:
        # a failing mirror must never affect live traffic, nor fill the console
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
            await self._forward(target, body, content_type)


class _TooLarge(Exception):
    pass


async def _read_body(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or _TooLarge as soon as it passes ``limit`` (chunked bodies announce
    no length, so the count is kept here, not trusted from a header)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(
    request: web.BaseRequest, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps({"error": message}).encode(),
        content_type=_JSON,
        headers=headers,
    )
    if not request.content.is_eof():
        # the body was not read (or not all of it): this connection cannot carry another request
        response.force_close()
    return response
