"""Fixtures for the Pulumi program's tests: a fresh recording mock monitor per test, configs.

The mocks are installed here, at import, before any test module imports the program, and again
for every test (pytest imports all test modules before running any, so one module-level
``set_mocks`` would leak registrations from one test into the next).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from infra import offline

offline.install("dev")

from infra.config import OperatorIdentityConfig, StackConfig  # noqa: E402
from infra.offline import DeclaredResource, RecordingMonitor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/cluster/"


@pytest.fixture(autouse=True)
def monitor() -> RecordingMonitor:
    return offline.install("dev")


def stack_config(
    environment: str,
    manifests: Path | None = None,
    operator: OperatorIdentityConfig | None = OperatorIdentityConfig(oidc_issuer=ISSUER),
) -> StackConfig:
    return StackConfig(
        stack=environment,
        environment=environment,
        manifests=manifests or ROOT / "manifests",
        project_dir=ROOT,
        commit="0123456789abcdef",
        location="westeurope",
        tags={"platform": "ml"},
        operator=operator,
    )


@pytest.fixture
def write_manifests(tmp_path: Path) -> Callable[[str], Path]:
    """Write one YAML file (dedented) into a fresh manifests directory and return the directory."""

    def write(text: str) -> Path:
        directory = tmp_path / "manifests"
        directory.mkdir(exist_ok=True)
        (directory / "platform.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return directory

    return write


def by_name(resources: list[DeclaredResource]) -> dict[str, DeclaredResource]:
    return {r.name: r for r in resources}
