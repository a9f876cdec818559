"""Hostile paths: a manifest may only make amlops read regular files and folders inside the
repository, within size limits (issue 8, item 1). Each refusal is an error finding at the line
that names the path; the readers (``amlops up``, the operator) refuse the same paths."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.core import azureml
from amlops.core.files import PathRefusedError, admit, contained
from amlops.core.findings import Finding
from amlops.core.limits import Limits
from amlops.core.manifests import load_tree
from amlops.core.validate import validate_paths
from amlops.handlers.objects import Resource, SpecError, source_of
from amlops.reconcile.inputs import Source
from tests.platform_text import manifest

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
WORKSPACE = """\
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: ws
spec:
  environment: dev
  location: westeurope
  resourceGroup: rg-ws
"""


def file_errors(findings: Sequence[Finding]) -> list[tuple[str, str, int]]:
    """(rule, file name, line) of the findings of the containment rule and missing files."""
    return [
        (f.rule, Path(f.file).name, f.line)
        for f in findings
        if f.is_error and f.rule.startswith(("files.", "ref.missing-file", "load."))
    ]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository (``.git`` marks its top level) with a workspace, next to a folder outside
    it that holds a secret and a large tree."""
    top = tmp_path / "repo"
    (top / ".git").mkdir(parents=True)
    (top / "manifests").mkdir()
    (top / "manifests" / "workspace.yaml").write_text(WORKSPACE)
    (top / "model").mkdir()
    (top / "model" / "weights.bin").write_bytes(b"\0" * 16)
    outside = tmp_path / "outside"
    (outside / "home" / "tree").mkdir(parents=True)
    (outside / "secret.txt").write_text("hunter2-password\n")
    for i in range(20):
        (outside / "home" / "tree" / f"f{i}").write_text("x")
    return top


def model(name: str, path: str) -> str:
    return manifest(
        "Model",
        name,
        f"""\
        workspace: ws
        model:
          name: {name}
          version: "1"
          path: {path}
        """,
    )


def write(repo: Path, name: str, text: str) -> Path:
    target = repo / "manifests" / name
    target.write_text(text)
    return target


def validate(repo: Path, *, sdk: bool = False) -> list[Finding]:
    return validate_paths([repo / "manifests"], sdk=sdk).findings


# -- escapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/etc/shadow",
        "../../../../../../../../etc",
        "file:///etc/passwd",
        "file:/etc/passwd",
        "../../outside/secret.txt",
        "../model/../../outside",
    ],
)
def test_a_model_path_outside_the_repository_is_an_error_at_its_line(repo: Path, path: str) -> None:
    write(repo, "m.yaml", model("m", path))
    assert file_errors(validate(repo)) == [("files.outside-root", "m.yaml", 10)]


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every folder the check lists, in order: proof that a walk stops where it must."""
    seen: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        seen.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return seen


def test_a_link_to_a_folder_outside_is_an_escape_and_the_walk_never_enters_it(
    repo: Path, walked: list[str]
) -> None:
    """The reproduction: a link to /root copied 771 MB and 48,658 files into the state dir."""
    (repo / "model-link").symlink_to(repo.parent / "outside" / "home")
    write(repo, "m.yaml", model("m", "../model-link"))
    findings = validate(repo)
    assert file_errors(findings) == [("files.outside-root", "m.yaml", 10)]
    outside = str(repo.parent / "outside")
    assert not any(w.startswith(outside) for w in walked)
    message = next(f.message for f in findings if f.rule == "files.outside-root")
    assert "outside the source root" in message and "move the files into it" in message


def test_a_link_inside_a_model_folder_pointing_outside_is_an_escape(repo: Path) -> None:
    (repo / "model" / "nested").mkdir()
    (repo / "model" / "nested" / "creds").symlink_to(repo.parent / "outside" / "secret.txt")
    write(repo, "m.yaml", model("m", "../model"))
    findings = validate(repo)
    assert file_errors(findings) == [("files.outside-root", "m.yaml", 10)]
    assert "model/nested/creds" in next(f.message for f in findings if f.is_error)
    assert all("hunter2" not in f.message for f in findings)


def test_links_that_stay_inside_the_repository_are_fine(repo: Path) -> None:
    (repo / "weights").symlink_to(repo / "model")
    (repo / "model" / "alias.bin").symlink_to(repo / "model" / "weights.bin")
    write(repo, "m.yaml", model("m", "../weights"))
    assert file_errors(validate(repo)) == []


def test_deployment_code_conda_file_scoring_script_and_pipeline_inputs_are_contained(
    repo: Path,
) -> None:
    (repo / "score").mkdir()
    (repo / "score" / "score.py").write_text("def init(): pass\n")
    write(
        repo,
        "endpoint.yaml",
        textwrap.dedent(
            """\
            apiVersion: amlops.io/v1alpha1
            kind: Endpoint
            metadata:
              name: e
            spec:
              workspace: ws
              endpoint: {name: e, auth_mode: key}
              deployments:
                - name: blue
                  model: azureml:m:1
                  code_configuration:
                    code: /etc
                    scoring_script: score.py
                - name: green
                  model: azureml:m:1
                  code_configuration:
                    code: ../score
                    scoring_script: ../../../outside/secret.txt
            """
        ),
    )
    write(
        repo,
        "environment.yaml",
        textwrap.dedent(
            """\
            apiVersion: amlops.io/v1alpha1
            kind: Environment
            metadata:
              name: env
            spec:
              workspace: ws
              environment:
                name: env
                image: mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest
                conda_file: /etc/passwd
            """
        ),
    )
    write(
        repo,
        "pipeline.yaml",
        textwrap.dedent(
            """\
            apiVersion: amlops.io/v1alpha1
            kind: Pipeline
            metadata:
              name: p
            spec:
              workspace: ws
              job:
                type: pipeline
                settings: {default_compute: azureml:serverless}
                inputs:
                  data: {type: uri_folder, path: ../../outside/home}
                jobs:
                  step:
                    type: command
                    command: echo
                    code: ../../../..
                    environment: azureml:AzureML-minimal:1
            """
        ),
    )
    assert sorted(file_errors(validate(repo))) == [
        ("files.outside-root", "endpoint.yaml", 12),
        ("files.outside-root", "endpoint.yaml", 18),
        ("files.outside-root", "environment.yaml", 10),
        ("files.outside-root", "pipeline.yaml", 11),
        ("files.outside-root", "pipeline.yaml", 16),
    ]


def test_the_sdk_loaders_never_get_a_part_whose_files_were_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The azure-ai-ml loaders open conda files and components themselves."""
    loaded: list[str] = []
    monkeypatch.setattr(azureml, "_loader", lambda name: lambda **_: loaded.append(name))
    monkeypatch.setenv("AMLOPS_NO_CACHE", "1")
    azureml._verdicts.cache_clear()
    write(repo, "m.yaml", model("m", "../../outside/secret.txt"))
    findings = validate(repo, sdk=True)
    assert file_errors(findings) == [("files.outside-root", "m.yaml", 10)]
    assert loaded == []
    azureml._verdicts.cache_clear()


def test_git_revisions_are_checked_by_where_their_paths_point() -> None:
    """``amlops plan`` validates revisions that are not checked out: no file to look at, but an
    absolute path or a `..` escape is still an error."""
    texts = {
        "manifests/a.yaml": model("a", "/etc/shadow"),
        "manifests/b.yaml": model("b", "../../../../../../../etc"),
        "manifests/c.yaml": model("c", "not/checked/out"),
    }
    report = validate_paths([], texts=texts, check_files=False, sdk=False)
    assert file_errors(report.findings) == [
        ("files.outside-root", "a.yaml", 10),
        ("files.outside-root", "b.yaml", 10),
    ]


# -- special files ------------------------------------------------------------------------


def test_a_fifo_is_its_own_finding_not_does_not_exist(repo: Path) -> None:
    os.mkfifo(repo / "pipe")
    write(repo, "m.yaml", model("m", "../pipe"))
    findings = validate(repo)
    assert file_errors(findings) == [("files.special", "m.yaml", 10)]
    assert "named pipe" in next(f.message for f in findings if f.rule == "files.special")
    assert all("does not exist" not in f.message for f in findings)


def test_a_fifo_inside_a_model_folder_is_refused(repo: Path) -> None:
    os.mkfifo(repo / "model" / "pipe")
    write(repo, "m.yaml", model("m", "../model"))
    assert file_errors(validate(repo)) == [("files.special", "m.yaml", 10)]


def test_a_link_to_a_device_is_an_escape(repo: Path) -> None:
    (repo / "zero").symlink_to("/dev/zero")
    write(repo, "m.yaml", model("m", "../zero"))
    assert file_errors(validate(repo)) == [("files.outside-root", "m.yaml", 10)]


def test_a_device_inside_the_root_is_special() -> None:
    with pytest.raises(PathRefusedError) as err:
        contained("/dev", "/dev/zero")
    assert err.value.rule == "files.special"
    assert "character device" in str(err.value)


# -- sizes --------------------------------------------------------------------------------


def test_a_folder_with_too_many_files_is_refused_and_the_walk_stops_early(
    repo: Path, walked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in range(30):
        (repo / "model" / f"d{d}").mkdir()
        for i in range(10):
            (repo / "model" / f"d{d}" / f"f{i}").write_text("x")
    write(repo, "m.yaml", model("m", "../model"))
    monkeypatch.setenv("AMLOPS_MAX_TREE_FILES", "5")
    findings = validate(repo)
    assert file_errors(findings) == [("files.too-many-files", "m.yaml", 10)]
    error = next(f for f in findings if f.rule == "files.too-many-files")
    assert "AMLOPS_MAX_TREE_FILES" in error.message
    model_dir = str(repo.resolve() / "model")
    # the model folder and the first folder below it, not all 31 folders
    assert len([w for w in walked if w.startswith(model_dir)]) == 2


def test_a_file_over_the_size_limit_is_refused_naming_its_size(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (repo / "model" / "big.bin").open("wb") as fh:
        fh.truncate(3 * 1024 * 1024)  # sparse
    write(repo, "m.yaml", model("m", "../model/big.bin"))
    monkeypatch.setenv("AMLOPS_MAX_FILE_BYTES", "1MiB")
    findings = validate(repo)
    assert file_errors(findings) == [("files.too-large", "m.yaml", 10)]
    error = next(f for f in findings if f.rule == "files.too-large")
    assert "3 MiB" in error.message and "AMLOPS_MAX_FILE_BYTES" in error.message
    monkeypatch.setenv("AMLOPS_MAX_FILE_BYTES", "4MiB")
    assert file_errors(validate(repo)) == []


def test_a_folder_over_the_byte_limit_is_refused(repo: Path) -> None:
    with (repo / "model" / "big.bin").open("wb") as fh:
        fh.truncate(4096)
    write(repo, "m.yaml", model("m", "../model"))
    report = validate_paths([repo / "manifests"], sdk=False, limits=Limits(max_tree_bytes=1024))
    assert file_errors(report.findings) == [("files.too-large", "m.yaml", 10)]
    assert "AMLOPS_MAX_TREE_BYTES" in report.errors[0].message


# -- the readers --------------------------------------------------------------------------


def test_amlops_up_stops_at_validation_and_copies_nothing(repo: Path, tmp_path: Path) -> None:
    (repo / "model-link").symlink_to(repo.parent / "outside" / "home")
    write(repo, "m.yaml", model("m", "../model-link"))
    state = tmp_path / "state"
    assert main(["up", str(repo / "manifests"), "--once", "--state-dir", str(state)]) == 1
    assert not state.exists() or not any(p.is_file() for p in state.rglob("*"))


def test_the_reconcilers_source_refuses_what_validation_refuses(repo: Path) -> None:
    """Defence in depth for `amlops up`: a link swapped in after validation is refused when the
    reconciler resolves the path, before a backend reads it."""
    write(repo, "m.yaml", model("m", "../model"))
    (manifest,) = [m for m in load_tree([repo / "manifests"]).manifests if m.kind == "Model"]
    source = Source.of(manifest)
    where = ("spec", "model", "path")
    assert source.resolve(where, "../model") == (repo / "model").resolve()
    (repo / "model" / "creds").symlink_to(repo.parent / "outside" / "secret.txt")
    with pytest.raises(PathRefusedError) as err:
        source.resolve(where, "../model")
    assert err.value.rule == "files.outside-root"
    assert str(err.value).startswith("spec.model.path: ../model")


def test_the_operator_refuses_links_out_of_its_source_root(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "models" / "m").mkdir(parents=True)
    (root / "models" / "m" / "link").symlink_to("/etc/passwd")
    obj = Resource.of({"kind": "Model", "metadata": {"name": "m"}, "spec": {}})
    with pytest.raises(SpecError, match=r"^spec\.model\.path: .*outside the source root"):
        source_of(obj, root).resolve(("spec", "model", "path"), "models/m")
    os.mkfifo(root / "fifo")
    with pytest.raises(SpecError, match="named pipe"):
        source_of(obj, root).resolve(("spec", "model", "path"), "fifo")


def test_admit_is_what_a_backend_calls_before_reading(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a").write_text("x")
    assert admit(tmp_path, tmp_path / "m") == (tmp_path / "m").resolve()
    assert admit(tmp_path, tmp_path / "missing") == (tmp_path / "missing").resolve()
    with pytest.raises(PathRefusedError) as err:
        admit(tmp_path / "m", tmp_path)
    assert err.value.rule == "files.outside-root"
    (tmp_path / "m" / "b").write_text("y")
    with pytest.raises(PathRefusedError) as err:
        admit(tmp_path, tmp_path / "m", Limits(max_tree_files=1))
    assert err.value.rule == "files.too-many-files"


def test_etc_shadow_fixture_fails_validate_at_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = HOSTILE / "paths-etc-shadow.yaml"
    platform = ROOT / "manifests" / "platform"
    assert main(["validate", str(platform), str(fixture), "--no-sdk", "-o", "github"]) == 1
    out = capsys.readouterr().out
    assert "line=12," in out and "title=files.outside-root" in out


def test_the_example_platform_passes_the_rule() -> None:
    report = validate_paths([ROOT / "manifests"], sdk=False)
    assert [f for f in report.findings if f.rule.startswith(("files.", "load."))] == []
