"""Make ``*.localhost`` resolve to loopback in this process (glibc does not).

The SDK dials storage at ``https://{account}.blob.core.localhost:PORT``. ``install()`` wraps
``socket.getaddrinfo`` so that every name ending in ``.localhost`` resolves to 127.0.0.1;
subprocesses get the same through ``sitecustomize.py`` in :data:`SITECUSTOMIZE_DIR` (put it on
``PYTHONPATH``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

SITECUSTOMIZE_DIR = Path(__file__).resolve().parent / "site"

_original = socket.getaddrinfo


def _is_local_name(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost")


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if _is_local_name(host):
        host = "127.0.0.1"
    return _original(host, *args, **kwargs)


def install() -> None:
    """Idempotent."""
    socket.getaddrinfo = _getaddrinfo


def uninstall() -> None:
    socket.getaddrinfo = _original


def installed() -> bool:
    return socket.getaddrinfo is _getaddrinfo
