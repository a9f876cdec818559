"""The pre-commit hook this repository publishes (``.pre-commit-hooks.yaml``) validates the YAML
files a commit changes, fails on a broken manifest with its ``path:line:col:`` finding, and
passes a clean change (issue 10 item 8), run by the ``pre-commit`` package itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import git

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / ".pre-commit-hooks.yaml"

pre_commit_clientlib = pytest.importorskip("pre_commit.clientlib")


def _hook() -> dict[str, Any]:
    (hook,) = yaml.safe_load(HOOKS.read_text())
    assert isinstance(hook, dict)
    return hook


def test_the_hook_manifest_is_one_pre_commit_accepts() -> None:
    (hook,) = pre_commit_clientlib.load_manifest(str(HOOKS))
    assert hook["id"] == "amlops-validate" and hook["entry"] == "amlops validate"
    assert hook["pass_filenames"] is True and hook["language"] == "python"
    assert hook["files"] == r"\.(ya?ml)$"


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    """A Git repository holding a small platform and a config that runs the published hook."""
    repo = tmp_path / "platform"
    shutil.copytree(ROOT / "manifests", repo / "manifests")
    (repo / "README.txt").write_text("not YAML: never handed to the hook\n")
    # The published hook as a `repo: local` hook, field for field, except its language:
    # `python` would build a fresh environment and pip-install amlops with all its Azure
    # dependencies from the network. `unsupported` (pre-commit's old `system`) runs the amlops
    # already installed, so what is tested is the hook's entry, file filter and file passing.
    hook = {**_hook(), "language": "unsupported"}
    config = {"repos": [{"repo": "local", "hooks": [hook]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "platform")
    return repo


def _run(repo: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``pre-commit run`` over the staged files, as ``git commit`` would run it."""
    git(repo, "add", *files)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),  # not the user's cache
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "amlops-validate", "--color", "never"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_a_broken_manifest_fails_the_hook_at_its_line(platform: Path) -> None:
    compute = platform / "manifests" / "platform" / "compute.yaml"
    compute.write_text(compute.read_text().replace("maxInstances: 2", "maxInstances: 9", 1))
    result = _run(platform, "manifests/platform/compute.yaml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "manifests/platform/compute.yaml:11:17: error compute.dev-max-instances" in result.stdout
    assert "amlops validate" in result.stdout and "Failed" in result.stdout


@pytest.mark.slow
def test_a_clean_change_passes_and_only_changed_yaml_is_checked(platform: Path) -> None:
    model = platform / "manifests" / "models" / "slm-base.yaml"
    model.write_text(model.read_text() + "\n")
    (platform / "README.txt").write_text("still not YAML\n")
    # A broken edit left out of the commit: pre-commit sets unstaged changes aside, so the
    # hook judges what is committed and must not report it.
    compute = platform / "manifests" / "platform" / "compute.yaml"
    compute.write_text(compute.read_text().replace("maxInstances: 2", "maxInstances: 9", 1))
    result = _run(platform, "manifests/models/slm-base.yaml", "README.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout and "compute.yaml" not in result.stdout


@pytest.mark.slow
def test_nothing_to_check_when_no_yaml_changed(platform: Path) -> None:
    (platform / "README.txt").write_text("changed\n")
    result = _run(platform, "README.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(no files to check)Skipped" in result.stdout.replace(".", "")
