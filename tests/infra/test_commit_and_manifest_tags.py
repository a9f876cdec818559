"""The Pulumi program's provenance comes from amlops.core.provenance, like every driver's: the
stack's commit (config, else what CI says, else Git) and manifest paths from the project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from amlops.core.provenance import COMMIT_ENV_VARS, checkout_commit, origin_in
from infra.config import UNKNOWN_COMMIT, from_values


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in COMMIT_ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def test_ci_says_which_commit_before_git(tmp_path: Path) -> None:
    assert checkout_commit(tmp_path, {"GITHUB_SHA": "abc"}) == "abc"
    both = {"AMLOPS_COMMIT": "mine", "BUILD_SOURCEVERSION": "ado"}
    assert checkout_commit(tmp_path, both) == "mine"  # the user's own variable wins
    assert checkout_commit(tmp_path, {}) is None  # no CI variable, no checkout


def test_a_git_checkout_names_its_head(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    assert checkout_commit(tmp_path, {}) == git("rev-parse", "HEAD")


@pytest.mark.usefixtures("no_ci")
def test_the_stack_commit_falls_back_to_unknown(tmp_path: Path) -> None:
    config = from_values({"environment": "dev"}, "dev", tmp_path)
    assert config.commit == UNKNOWN_COMMIT
    pinned = from_values({"environment": "dev", "commit": "feedface"}, "dev", tmp_path)
    assert pinned.commit == "feedface"


def test_manifest_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    file = tmp_path / "manifests" / "platform.yaml"
    assert origin_in(file, tmp_path, "c0ffee").tags() == {
        "amlops-manifest": "manifests/platform.yaml",
        "amlops-commit": "c0ffee",
    }
    elsewhere = tmp_path.parent / "elsewhere.yaml"
    assert origin_in(elsewhere, tmp_path / "project", None).manifest == str(elsewhere)
    assert origin_in("m.yaml", None, None).manifest == "m.yaml"
