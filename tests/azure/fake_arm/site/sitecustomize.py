"""Loaded by subprocesses of the Azure ML tests (PYTHONPATH): ``*.localhost`` -> 127.0.0.1."""

import socket

_original_getaddrinfo = socket.getaddrinfo


def _amlops_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _original_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _amlops_getaddrinfo
