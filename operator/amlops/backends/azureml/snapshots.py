"""Drift checks that scale: observe by listing, and hold a whole workspace back on 429.

**Snapshots.** A drift check reads every object back. One GET per object per timer costs
N reads per interval; a list costs one read (plus a page per ~100 items) for every object of a
kind. A :class:`Snapshots` keeps, per scope (workspace, kind, parent), the last list taken
through the SDK's list call, for ``ttl_s`` seconds (``AMLOPS_AZURE_SNAPSHOT_TTL``), and answers
every read of that kind from it:

* model versions: ``ml.models.list(name=NAME)``, one list per model name (Azure has no
  workspace-wide list of versions with their tags);
* online endpoints: ``ml.online_endpoints.list()``, one per workspace;
* online deployments: ``ml.online_deployments.list(ENDPOINT)``, one per endpoint (they are
  its children; the reconciler lists them anyway);
* serverless endpoints: ``ml.serverless_endpoints.list()``, one per workspace;
* schedules: ``ml.schedules.list(list_view_type="All")``, one per workspace; an absent name
  is answered by the list too (``find``): most pipelines have no schedule, and a GET each
  would be a 404 each;
* computes: ``ml.compute.list()``, one per workspace, always (Pulumi's few clusters, named by
  every pipeline: a GET per pipeline would be the cost).

A read makes a targeted GET instead when a list would not pay or could mislead:

* fewer than two objects of the kind (two parents, for deployments) were asked for in the
  workspace: a list costs what a GET costs and may be many pages of objects amlops does not
  manage;
* the backend wrote the object since the list was taken (``invalidate``): its next read is a
  GET, so a handler sees its own write at once;
* the object is not in the list (deleted, or made since; but for schedules), or the list
  shows an operation in
  progress on it (Creating, Updating, Deleting): the reconcile is waiting on it.

A change made behind amlops's back is therefore seen within the TTL plus the drift interval.
Parallel readers of one scope wait for one list rather than each taking their own.

**The workspace gate.** azure-core retries each call after the ``Retry-After`` of a 429; the
other calls to the same workspace, from other objects' threads, would keep coming. The
:class:`GatePolicy` (one per workspace's MLClient, after the retry policy: it sees every
attempt) records a 429's ``Retry-After`` on the workspace's :class:`WorkspaceGate`, and every
request to that workspace waits until then before it is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Scope = tuple[str, str, str]  # (workspace, kind, parent: a model name, an endpoint, or "")
Lister = Callable[[], Iterable[tuple[str, Any]]]  # a scope's list: (name, item) pairs
Settled = Callable[[Any], bool]  # whether an item is in a final state (no operation running)

# how long one 429 may hold a workspace back at most (a malformed header must not stop it)
MAX_HOLD_S = 300.0


@dataclass(frozen=True)
class Snapshot:
    """One list of a scope: items by name, and when it was asked for."""

    taken: float
    items: dict[str, Any]


class Snapshots:
    """Lists per scope with a time-to-live; thread-safe."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._taken: dict[Scope, Snapshot] = {}
        self._listing: dict[Scope, threading.Lock] = {}
        self._asked: dict[Scope, set[str]] = {}  # scope -> names asked for
        self._written: dict[Scope, dict[str, float]] = {}  # scope -> name -> when written

    def _fresh(self, scope: Scope) -> Snapshot | None:
        snap = self._taken.get(scope)
        if snap is None or self._clock() - snap.taken >= self.ttl_s:
            return None
        return snap

    def wanted(self, scope: Scope, name: str) -> bool:
        """Note that ``name`` of the scope was asked for; True when a list pays (on, and at
        least two names of the scope asked for: versions of one model, endpoints of one
        workspace, or the endpoints whose deployments are listed)."""
        if self.ttl_s <= 0:
            return False
        with self._lock:
            asked = self._asked.setdefault(scope, set())
            asked.add(name)
            return len(asked) >= 2

    def get(self, scope: Scope, list_items: Lister) -> tuple[Snapshot, bool]:
        """The scope's fresh snapshot, listing when there is none (one lister at a time per
        scope: the others wait and share its list); True when this call listed."""
        with self._lock:
            snap = self._fresh(scope)
            if snap is not None:
                return snap, False
            lister = self._listing.setdefault(scope, threading.Lock())
        with lister:
            with self._lock:
                snap = self._fresh(scope)
            if snap is not None:
                return snap, False
            taken = self._clock()
            items = dict(list_items())
            snap = Snapshot(taken, items)
            with self._lock:
                self._taken[scope] = snap
            return snap, True

    def store(self, scope: Scope, items: Iterable[tuple[str, Any]]) -> None:
        """A list taken anyway (a parent's children read after a write) becomes the scope's."""
        snap = Snapshot(self._clock(), dict(items))
        with self._lock:
            self._taken[scope] = snap

    def lookup(self, scope: Scope, name: str, list_items: Lister, settled: Settled) -> Any | None:
        """The item the scope's snapshot has for ``name``; None: make a targeted GET (see the
        module's docstring for when)."""
        return self.find(scope, name, list_items, settled)[1]

    def find(
        self, scope: Scope, name: str, list_items: Lister, settled: Settled
    ) -> tuple[bool, Any | None]:
        """``lookup`` for a kind whose absence the list settles as well (schedules: a pipeline
        without one asks every drift cycle): ``(True, item)``, or ``(True, None)``
        when the fresh list does not have it and the backend has not written it since;
        ``(False, None)``: make a targeted GET."""
        if not self.wanted(scope, name):
            return False, None
        snap, _listed = self.get(scope, list_items)
        if self.written_since(scope, snap, name):
            return False, None
        item = snap.items.get(name)
        if item is not None and not settled(item):
            return False, None
        return True, item

    def invalidate(self, scope: Scope, name: str) -> None:
        """The backend writes ``name`` (called before the write is sent): its reads are GETs
        until a list taken after this."""
        now = self._clock()
        with self._lock:
            written = self._written.setdefault(scope, {})
            written[name] = now
            # a write older than the TTL predates every fresh snapshot: forget it
            for old in [n for n, when in written.items() if now - when > self.ttl_s]:
                del written[old]

    def written_since(self, scope: Scope, snap: Snapshot, name: str | None = None) -> bool:
        """Whether the backend wrote ``name`` (any name: None) of the scope since ``snap``."""
        with self._lock:
            written = self._written.get(scope, {})
            if name is not None:
                return written.get(name, float("-inf")) >= snap.taken
            return any(when >= snap.taken for when in written.values())

    def clear(self) -> None:
        with self._lock:
            self._taken.clear()


class WorkspaceGate:
    """Per workspace, the time before which no request may be sent (a 429's Retry-After)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def hold(self, workspace: str, seconds: float) -> None:
        """Hold the workspace's requests back for ``seconds`` from now (never shortened)."""
        until = self._clock() + min(max(seconds, 0.0), MAX_HOLD_S)
        with self._lock:
            if until > self._until.get(workspace, 0.0):
                self._until[workspace] = until

    def remaining(self, workspace: str) -> float:
        with self._lock:
            return max(0.0, self._until.get(workspace, 0.0) - self._clock())

    def wait(self, workspace: str) -> None:
        """Return once the workspace may be called (at once when it is not held back)."""
        while True:
            left = self.remaining(workspace)
            if left <= 0:
                return
            self._sleep(left)


def gate_policy(gate: WorkspaceGate, workspace: str) -> Any:
    """An azure-core policy for one workspace's MLClient (``per_retry_policies``): every
    attempt waits at the gate; a 429 with Retry-After holds the gate."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class GatePolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            gate.wait(workspace)

        def on_response(self, request: Any, response: Any) -> None:
            if response.http_response.status_code != 429:
                return
            seconds = _retry_after(response)
            if seconds is not None:
                gate.hold(workspace, seconds)

    return GatePolicy()


def _retry_after(response: Any) -> float | None:
    """A response's Retry-After (or retry-after-ms) in seconds, as azure-core reads it."""
    try:
        from azure.core.pipeline.policies._utils import get_retry_after
    except ImportError:  # a later azure-core moved it: read the plain header
        value = response.http_response.headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
    found: float | None = get_retry_after(response)
    return found
