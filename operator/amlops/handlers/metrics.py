"""Prometheus metrics: reconciles by kind and result, their duration, objects by condition.

One registry per operator (not the process-global default), so tests can read it directly and
two operators in one process would not mix their numbers.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Backend calls range from a SQLite lookup (ms) to registering a large model (minutes).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Objects(Collector):
    """``amlops_objects{kind,condition}``: computed from the last phase of every object when
    scraped, so deleted objects simply drop out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase: dict[str, tuple[str, str]] = {}  # uid -> (kind, phase)

    def set(self, uid: str, kind: str, phase: str) -> None:
        with self._lock:
            self._phase[uid] = (kind, phase)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phase.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            counts = Tally(self._phase.values())
        family = GaugeMetricFamily(
            "amlops_objects", "Objects by kind and condition", labels=["kind", "condition"]
        )
        for (kind, phase), n in sorted(counts.items()):
            family.add_metric([kind, phase], n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "amlops_reconciles",
            "Reconciles by kind and result (Ready, Reconciling, Stalled, Suspended, Error)",
            ["kind", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "amlops_reconcile_duration_seconds",
            "Time one reconcile took, backend calls included",
            ["kind"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.objects = _Objects()
        self.registry.register(self.objects)
        self._server: WSGIServer | None = None

    def observe(self, kind: str, uid: str, result: str, seconds: float) -> None:
        self.reconciles.labels(kind, result).inc()
        self.duration.labels(kind).observe(seconds)
        self.objects.set(uid, kind, result)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
