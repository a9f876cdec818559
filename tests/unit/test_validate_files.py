"""``amlops validate FILE...`` (pre-commit, changed files in CI) and ``validate`` with no path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.cli.targets import repository_root

from .conftest import git

CLI_V2 = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "cli-v2"


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Git repository of plain Azure ML CLI v2 files; the working directory is its root."""
    repo = tmp_path / "repo"
    shutil.copytree(CLI_V2, repo)
    git(repo, "init", "-q")
    monkeypatch.chdir(repo)
    return repo


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_a_file_is_checked_against_the_whole_repository(
    plain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Alone, the deployment names an endpoint nobody declares; in its repository it does not.
    (plain / "alone").mkdir()
    shutil.copy(plain / "deployment.yml", plain / "alone" / "deployment.yml")
    assert main(["validate", "alone", "--no-sdk"]) == 1
    assert " error ref.endpoint " in capsys.readouterr().out
    (plain / "alone" / "deployment.yml").unlink()
    assert main(["validate", "deployment.yml", "--no-sdk"]) == 0
    assert _lines(capsys) == [
        "validation passed: 0 errors, 0 warnings (1 manifests in 1 files: 1 Endpoint)"
    ]


def test_only_the_named_files_are_reported(plain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (plain / "broken.yml").write_text("name: [unclosed\n")
    assert main(["validate", "deployment.yml", "model.yml", "--no-sdk"]) == 0
    out = capsys.readouterr().out
    assert "broken.yml" not in out and "workspace.yml" not in out
    assert main(["validate", "broken.yml", "--no-sdk"]) == 1
    (line, _summary) = _lines(capsys)
    assert line.startswith("broken.yml:2:1:") and " error load.yaml-syntax " in line


def test_a_named_file_the_folder_scan_skips_is_still_read(
    plain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (plain / ".ci").mkdir()
    (plain / ".ci" / "broken.yml").write_text("name: [unclosed\n")
    assert main(["validate", ".ci/broken.yml", "--no-sdk"]) == 1
    assert _lines(capsys)[0].startswith(".ci/broken.yml:2:1:")


def test_no_path_validates_the_repository_root(
    plain: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (plain / "sub").mkdir()
    monkeypatch.chdir(plain / "sub")
    assert main(["validate", "--no-sdk"]) == 0
    (*_, summary) = _lines(capsys)
    assert "5 manifests in 6 files" in summary


def test_the_repository_root_is_amlops_yaml_folder_or_the_git_top(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "m.yml").write_text("")
    assert repository_root(loose / "m.yml") == loose  # no Git, no config: the file's folder
    top = tmp_path / "mono"
    platform = top / "platform" / "ml"
    (platform / "models").mkdir(parents=True)
    git(top, "init", "-q")
    assert repository_root(platform / "models") == top
    (platform / "amlops.yaml").write_text("")
    assert repository_root(platform / "models") == platform
    assert repository_root(top / "platform") == top  # above the config: the Git top level
    (tmp_path / "amlops.yaml").write_text("")
    assert repository_root(top) == top  # never above the Git top level
    assert repository_root(loose / "m.yml") == tmp_path  # outside Git: the nearest config
