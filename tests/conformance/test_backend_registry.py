"""The drivers open backends by name; the local default never imports the Azure ML SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amlops.backends import BACKENDS, BackendOptions, UnknownBackendError, open_backend


def test_the_local_backend_opens_without_importing_the_azure_ml_sdk(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from amlops.backends import BackendOptions, "
        "open_backend; import amlops.cli.up, amlops.handlers.runtime; "
        f"opened = open_backend('local', BackendOptions(state_dir=Path({str(tmp_path)!r}))); "
        "opened.close(); "
        "print(sorted(m for m in sys.modules if m.startswith(('azure.ai.ml', "
        "'amlops.backends.azureml'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unknown_backends_are_named_with_the_known_ones() -> None:
    assert set(BACKENDS) == {"local", "azureml"}
    with pytest.raises(UnknownBackendError, match="azureml, local"):
        open_backend("nosuch", BackendOptions())


def test_the_azureml_backend_needs_an_owner() -> None:
    from amlops.backends.base import BackendError

    with pytest.raises(BackendError, match="AMLOPS_AZURE_OWNER"):
        open_backend("azureml", BackendOptions(env={}))
