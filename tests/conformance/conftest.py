"""Every backend under the same tests: ``backend`` is parametrised over ``local`` and
``azureml`` (on the fake Azure ML API of tests/azure, whose fixtures are reused here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlops.backends.base import Backend
from amlops.backends.local.backend import LocalBackend

# the fake cloud's fixtures, as tests/azure defines them (a session of its own here)
from tests.azure.conftest import (  # noqa: F401
    azure_env,
    azure_pki,
    azurite,
    fake_arm_session,
    traffic_dir,
)

WS = "dev"
_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture(params=["local", "azureml"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        with LocalBackend(tmp_path / "state") as local:
            local.start()
            yield local
        return
    from tests.azure.backend_support import make_backend

    # The fake cloud here has a CA of its own, which its session fixture makes the process's
    # (REQUESTS_CA_BUNDLE, SSL_CERT_FILE) until the session ends: tests/azure's cloud, in the
    # same session, needs its CA back after each test here.
    saved = {k: os.environ.get(k) for k in _CA_VARIABLES}
    env = request.getfixturevalue("azure_env")
    os.environ.update({k: env.env[k] for k in _CA_VARIABLES})
    try:
        yield make_backend(env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
