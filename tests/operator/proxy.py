"""A counting, fault-injecting HTTP proxy in front of a real kube-apiserver.

The operator under test talks plain HTTP to the proxy with its ServiceAccount's bearer token;
the proxy forwards every request unchanged over TLS to the API server (streaming watch
responses through) and records method, path, query and answer. Tests count requests by verb
from these records, and can make the proxy answer some requests itself (a 409 or a 500) or
hold them (to kill the operator while its status write is in flight).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

_HOP = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
}
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Record:
    at: float
    method: str
    path: str
    query: dict[str, str]
    status: int
    user_agent: str
    injected: bool = False
    involved: str = ""  # for Event POSTs: "<kind>/<name>" of the involved object

    @property
    def dry_run(self) -> bool:
        return "dryRun" in self.query

    @property
    def verb(self) -> str:
        """The Kubernetes verb, as an audit log would name it."""
        if self.method == "GET":
            if self.query.get("watch") in ("true", "1"):
                return "watch"
            return "get" if _names_object(self.path) else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if _names_object(self.path) else "deletecollection",
        }.get(self.method, self.method.lower())

    @property
    def write(self) -> bool:
        """A change the API server accepted (a dry run, a refused or an injected answer is
        a request, not a write)."""
        accepted = self.status < 400 and not self.injected
        return self.verb in WRITE_VERBS and not self.dry_run and accepted


def rbac_rules(record: Record) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) the API server authorized the request as: a
    PATCH that created its object (server-side apply, answered 201) needs ``create`` too.
    Nothing for discovery paths (/api, /apis/..., /version), which every user may read."""
    parts = [p for p in record.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return set()
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
    verbs = {record.verb} | (
        {"create"} if record.verb == "patch" and record.status == 201 else set()
    )
    return {(group, resource, verb) for verb in verbs}


def _names_object(path: str) -> bool:
    """``/apis/g/v/namespaces/ns/plural/name[/sub]`` or ``/api/v1/plural/name`` names one."""
    parts = [p for p in path.split("/") if p]
    core = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if core[:1] == ["namespaces"] and len(core) >= 2:
        core = core[2:] if len(core) > 2 else ["namespaces", core[1]]
    return len(core) >= 2


@dataclass
class Fault:
    """Answer up to ``count`` matching requests with ``status`` instead of forwarding them."""

    method: str
    path: re.Pattern[str]
    status: int
    count: int
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.hits < self.count and method == self.method and bool(self.path.search(path))


@dataclass
class Hold:
    method: str
    path: re.Pattern[str]
    release: asyncio.Event
    held: int = 0
    drop: bool = False


@dataclass
class _State:
    records: list[Record] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)


class Proxy:
    def __init__(self, upstream: str, ca_pem: bytes) -> None:
        self.upstream = upstream.rstrip("/")
        self._ssl = ssl.create_default_context(cadata=ca_pem.decode())
        self._state = _State()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self.url = self._call(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _stop(self) -> None:
        for hold in self._state.holds:
            hold.drop = True
            hold.release.set()
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()
        # open watches end with the proxy: cancel their handlers rather than leave them pending
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- test controls -------------------------------------------------------------------------

    def records(self, since: float = 0.0) -> list[Record]:
        with self._lock:
            return [r for r in self._state.records if r.at >= since]

    def mark(self) -> float:
        """A point in time to count requests from."""
        time.sleep(0.01)
        return time.monotonic()

    def inject(self, method: str, path: str, status: int, count: int = 1) -> Fault:
        fault = Fault(method, re.compile(path), status, count)
        with self._lock:
            self._state.faults.append(fault)
        return fault

    def hold(self, method: str, path: str) -> Hold:
        hold = self._call(self._new_hold(method, path))
        assert isinstance(hold, Hold)
        return hold

    async def _new_hold(self, method: str, path: str) -> Hold:
        hold = Hold(method, re.compile(path), asyncio.Event())
        self._state.holds.append(hold)
        return hold

    def release(self, hold: Hold, *, drop: bool = False) -> None:
        """Let held requests through, or (``drop``) answer them 503 without forwarding."""

        def go() -> None:
            hold.drop = drop
            hold.release.set()
            self._state.holds.remove(hold)

        self._loop.call_soon_threadsafe(go)

    # -- forwarding ----------------------------------------------------------------------------

    def _record(self, request: web.Request, status: int, body: bytes, injected: bool) -> None:
        involved = ""
        if request.method == "POST" and request.path.endswith("/events") and body:
            try:
                obj = json.loads(body).get("involvedObject", {})
                involved = f"{obj.get('kind', '')}/{obj.get('name', '')}"
            except (ValueError, AttributeError):
                pass
        record = Record(
            at=time.monotonic(),
            method=request.method,
            path=request.path,
            query={k: v[-1] for k, v in parse_qs(request.query_string).items()},
            status=status,
            user_agent=request.headers.get("User-Agent", ""),
            injected=injected,
            involved=involved,
        )
        with self._lock:
            self._state.records.append(record)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._fault_for(request.method, request.path)
        if fault is not None:
            self._record(request, fault.status, body, injected=True)
            return _status_response(fault.status, "injected by the test proxy")
        for hold in list(self._state.holds):
            if request.method == hold.method and hold.path.search(request.path):
                hold.held += 1
                await hold.release.wait()
                if hold.drop:
                    self._record(request, 503, body, injected=True)
                    return _status_response(503, "dropped by the test proxy")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = self.upstream + request.path_qs
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body or None
            ) as upstream:
                self._record(request, upstream.status, body, injected=False)
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            self._record(request, 502, body, injected=True)
            return _status_response(502, f"upstream: {exc}")


def _status_response(code: int, message: str) -> web.Response:
    reason = {409: "Conflict", 500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason.get(code, "Unknown"),
        "code": code,
    }
    return web.json_response(status, status=code)


# -- counting ------------------------------------------------------------------------------------


def by_verb(records: Iterable[Record]) -> dict[str, int]:
    return dict(sorted(Counter(r.verb for r in records).items()))


def writes(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.write]


def about(namespace: str, name: str | None = None) -> Callable[[Record], bool]:
    """Requests on objects of one namespace (or one object there, Events about it included)."""

    def match(r: Record) -> bool:
        if f"/namespaces/{namespace}/" not in r.path:
            return False
        if name is None:
            return True
        if r.path.endswith("/events"):
            return r.involved.endswith(f"/{name}")
        parts = r.path.split("/")
        return name in parts or f"{name}-keys" in parts

    return match
