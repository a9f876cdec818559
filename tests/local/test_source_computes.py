"""The operator's view of its source root (issue 13, D1/D2) with the real local backend: the
ComputeClusters are learnt again when the files change, a cluster that fails its schema is
reported once with file, line and field and skipped, and a checkout that is not there yet
counts once it arrives."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from amlops.backends.local.backend import LocalBackend
from amlops.core.limits import Limits
from amlops.handlers.runtime import Sources
from tests.platform_text import manifest

from .conftest import WS


def compute_yaml(name: str, max_instances: str) -> str:
    """A ComputeCluster in the workspace ``ws``; ``max_instances`` as written (maybe invalid)."""
    spec = f"""\
        workspace: {WS}
        vmSize: Standard_NC6s_v3
        minInstances: 0
        maxInstances: {max_instances}
        """
    return manifest("ComputeCluster", name, spec)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_computes_are_learnt_again_when_the_source_root_changes(
    backend: LocalBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "source"
    sources = Sources(root, backend.seed_computes, Limits(), rescan_s=0)
    assert sources.refresh() is False  # no checkout yet: nothing to learn, nothing raised

    root.mkdir()
    (root / "a.yaml").write_text(compute_yaml("a", "3"))
    (root / "bad.yaml").write_text(compute_yaml("bad", "two"))
    with caplog.at_level(logging.WARNING):
        assert sources.refresh() is True
    info = backend.get_compute(WS, "a")
    assert info is not None and info.max_instances == 3
    assert backend.get_compute(WS, "bad") is None
    (warning,) = _warnings(caplog)
    assert warning.startswith("bad.yaml:9:") and "spec.maxInstances" in warning

    caplog.clear()
    assert sources.refresh() is False  # nothing changed: not read again
    (root / "b.yml").write_text(compute_yaml("b", "2"))
    with caplog.at_level(logging.WARNING):
        assert sources.refresh() is True
    assert backend.get_compute(WS, "b") is not None
    assert _warnings(caplog) == []  # the broken file was reported already

    (root / "a.yaml").write_text(compute_yaml("a", "5"))
    os.utime(root / "a.yaml", ns=(1, 1))  # an mtime moved back counts too (a checkout)
    assert sources.refresh() is True
    info = backend.get_compute(WS, "a")
    assert info is not None and info.max_instances == 5


def test_looks_at_the_files_at_most_once_per_interval(
    backend: LocalBackend, tmp_path: Path
) -> None:
    root = tmp_path / "source"
    root.mkdir()
    sources = Sources(root, backend.seed_computes, Limits(), rescan_s=3600)
    assert sources.refresh() is True
    (root / "late.yaml").write_text(compute_yaml("late", "1"))
    assert sources.refresh() is False  # within the interval: not looked at
    assert backend.get_compute(WS, "late") is None


def test_a_backend_that_fails_to_learn_does_not_fail_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> None:
        raise OSError("disk full")

    root = tmp_path / "source"
    root.mkdir()
    (root / "a.yaml").write_text(compute_yaml("a", "1"))
    with caplog.at_level(logging.ERROR):
        assert Sources(root, broken, Limits(), rescan_s=0).refresh() is False
    assert any("could not learn" in r.getMessage() for r in caplog.records)
