"""What the fake served: a queryable request log, and the oav traffic recording."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
# POST actions that only read (listKeys, listSecrets, getLogs ...) count as reads.
_READ_ACTIONS = re.compile(r"/(list[A-Za-z]*|getLogs|getStatus)$")


@dataclass(frozen=True)
class Record:
    """One request as the fake answered it (no headers, no bodies: nothing secret)."""

    seq: int
    monotonic: float
    method: str
    path: str
    api_version: str | None
    operation_id: str | None
    status: int
    fault: bool

    @property
    def is_write(self) -> bool:
        if self.method in WRITE_METHODS:
            return True
        return self.method == "POST" and _READ_ACTIONS.search(self.path) is None

    @property
    def is_read(self) -> bool:
        return not self.is_write


class RequestLog:
    """Thread-safe list of :class:`Record` with counters; ``reset()`` clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._seq = itertools.count(1)

    def add(self, record_fields: dict[str, Any]) -> Record:
        with self._lock:
            record = Record(seq=next(self._seq), **record_fields)
            self._records.append(record)
            return record

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def find(
        self,
        operation_id: str | None = None,
        *,
        method: str | None = None,
        status: int | None = None,
        path_contains: str | None = None,
    ) -> list[Record]:
        return [
            r
            for r in self.records
            if (operation_id is None or r.operation_id == operation_id)
            and (method is None or r.method == method.upper())
            and (status is None or r.status == status)
            and (path_contains is None or path_contains in r.path)
        ]

    def count(
        self,
        operation_id: str | None = None,
        *,
        method: str | None = None,
        status: int | None = None,
    ) -> int:
        return len(self.find(operation_id, method=method, status=status))

    def by_operation(self) -> Counter[str]:
        return Counter(r.operation_id or f"{r.method} (unrouted)" for r in self.records)

    def by_method(self) -> Counter[str]:
        return Counter(r.method for r in self.records)

    @property
    def reads(self) -> int:
        return sum(1 for r in self.records if r.is_read)

    @property
    def writes(self) -> int:
        return sum(1 for r in self.records if r.is_write)

    def operation_ids(self) -> list[str]:
        """The operationIds in the order first seen (handy in assertion messages)."""
        seen: dict[str, None] = {}
        for r in self.records:
            if r.operation_id:
                seen.setdefault(r.operation_id, None)
        return list(seen)


# Values never written to a recording (keys, SAS signatures): replaced by this marker.
REDACTED = "redacted"
_SECRET_FIELDS = frozenset(
    {"primaryKey", "secondaryKey", "key", "sasToken", "accessToken", "keyValue"}
)
_RECORDED_REQUEST_HEADERS = frozenset({"content-type", "accept", "x-ms-client-request-id"})


def _redact_one(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return _redact(value)
    if key in _SECRET_FIELDS:
        return REDACTED
    if key == "sasUri":  # keep it a URI, drop the signature
        return value.split("?", 1)[0] + f"?sig={REDACTED}"
    return value


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_one(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


class TrafficRecorder:
    """Writes each request/response pair of a spec'd operation as one file in the format
    ``oav validate-traffic`` reads (``liveRequest`` / ``liveResponse``)."""

    def __init__(self, directory: Path, prefix: str = "") -> None:
        self.directory = directory
        self.prefix = prefix
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.written = 0

    def record(
        self,
        *,
        operation_id: str,
        method: str,
        url: str,
        request_headers: dict[str, str],
        request_body: Any,
        status: int,
        response_headers: dict[str, str],
        response_body: Any,
    ) -> Path:
        payload = {
            "liveRequest": {
                "method": method,
                "url": url,
                "headers": {
                    k.lower(): v
                    for k, v in request_headers.items()
                    if k.lower() in _RECORDED_REQUEST_HEADERS
                },
                "body": _redact(request_body),
            },
            "liveResponse": {
                "statusCode": str(status),
                "headers": {k: v for k, v in response_headers.items()},
                "body": _redact(response_body),
            },
        }
        with self._lock:
            seq = next(self._seq)
            path = self.directory / f"{self.prefix}{seq:05d}-{operation_id}.json"
            path.write_text(json.dumps(payload, indent=1, sort_keys=True))
            self.written += 1
        return path
