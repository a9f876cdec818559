"""Shared fixtures: paths into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
