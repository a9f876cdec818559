"""Loaded by subprocesses of the Azure ML tests (PYTHONPATH): ``*.localhost`` -> 127.0.0.1.

With ``AMLOPS_TEST_FAKE_CREDENTIAL=1`` it also makes ``azure.identity.DefaultAzureCredential``
the harness's FakeCredential (JWTs with the audience asked for: the fake cloud has no login),
so that a subprocess builds its credential as in production and the product has no back door.
"""

import importlib.util
import os
import socket
import sys
from pathlib import Path

_original_getaddrinfo = socket.getaddrinfo


def _amlops_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _original_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _amlops_getaddrinfo


def _install_fake_credential() -> None:
    # credential.py by its path: the tests package need not be importable in the subprocess
    path = Path(__file__).resolve().parents[1] / "credential.py"
    spec = importlib.util.spec_from_file_location("_amlops_fake_credential", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import azure.identity

    azure.identity.DefaultAzureCredential = module.FakeCredential  # type: ignore[misc]


if os.environ.get("AMLOPS_TEST_FAKE_CREDENTIAL") == "1":
    _install_fake_credential()
