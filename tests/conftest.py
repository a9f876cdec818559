"""Shared fixtures: paths into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests share a 2-core CI machine with real servers: how fast Hypothesis generates
# inputs there is not what the tests are about.
settings.register_profile("amlops", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("amlops")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def example_platform() -> Path:
    return ROOT / "manifests"


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/amlops (validators, SDK verdicts)."""
    os.environ["AMLOPS_CACHE_DIR"] = str(tmp_path_factory.mktemp("amlops-cache"))
