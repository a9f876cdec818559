"""Hostile YAML: input that would make reading it cost gigabytes or never end is refused with a
finding at its file and line, decided before anything big is built or read (issue 8, item 5)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.core.findings import Finding
from amlops.core.limits import GiB, Limits, LimitsError, MiB, parse_size
from amlops.core.manifests import load_tree
from amlops.core.source import YamlLimitError, load_documents
from amlops.core.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
BOMB = HOSTILE / "yaml-billion-laughs.yaml"
CLI = "import sys; from amlops.cli import main; sys.exit(main(sys.argv[1:]))"
MODEL = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: m{i}
spec:
  workspace: ws
  model: {{name: m{i}, version: "1", path: m}}
"""


def errors(findings: Sequence[Finding]) -> list[tuple[str, str, int]]:
    return [(f.rule, Path(f.file).name, f.line) for f in findings if f.is_error]


def test_billion_laughs_is_an_alias_limit_finding_at_the_line_that_crosses_the_limit() -> None:
    assert BOMB.stat().st_size < 1024  # the whole attack fits in a few hundred bytes
    report = validate_paths([BOMB], sdk=False)
    # 9 levels of 9 aliases: line 15 is the first level over a million values (5.4 million)
    assert errors(report.findings) == [("load.alias-limit", BOMB.name, 15)]
    assert "AMLOPS_MAX_YAML_NODES" in report.errors[0].message


def test_billion_laughs_cli_exits_1_quickly_in_little_memory(tmp_path: Path) -> None:
    """The issue's done-when, in a child process capped at 1 GiB of address space: before the
    fix, validating this file grew past 10 GB (here: a MemoryError, exit 2)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (GiB, GiB))

    proc = subprocess.run(
        [sys.executable, "-c", CLI, "validate", str(BOMB), "--no-sdk", "-o", "github"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap,
        cwd=tmp_path,
        env={**os.environ, "AMLOPS_NO_CACHE": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "line=15," in proc.stdout and "title=load.alias-limit" in proc.stdout


def test_a_document_using_too_many_aliases_is_refused(tmp_path: Path) -> None:
    uses = ", ".join(["*x"] * 30)
    (tmp_path / "many.yaml").write_text(f"a: &x 1\nb: [{uses}]\n")
    result = load_tree([tmp_path], limits=Limits(max_yaml_aliases=20))
    assert errors(result.findings) == [("load.alias-limit", "many.yaml", 2)]
    assert "AMLOPS_MAX_YAML_ALIASES" in result.findings[0].message


def test_aliases_multiplying_one_long_string_are_refused_by_expanded_text(tmp_path: Path) -> None:
    """Few values, but each a reference to one 1 KiB string: the text they expand to counts."""
    uses = ", ".join(["*s"] * 100)
    (tmp_path / "text.yaml").write_text(f"s: &s {'x' * 1024}\nall: [{uses}]\n")
    result = load_tree([tmp_path], limits=Limits(max_manifest_bytes=64 * 1024))
    assert errors(result.findings) == [("load.alias-limit", "text.yaml", 2)]


def test_anchors_used_the_ordinary_way_still_load(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(
        "defaults: &d {cpu: 1, memory: 2Gi}\nsmall: {<<: *d, cpu: 2}\nsame: *d\n"
    )
    (doc,) = load_documents(tmp_path / "ok.yaml")
    assert doc.data["small"] == {"cpu": 2, "memory": "2Gi"}
    assert doc.data["same"] == {"cpu": 1, "memory": "2Gi"}


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:  # sparse: 11 MiB of NUL bytes, which are not YAML if read
        fh.truncate(11 * MiB)
    result = load_tree([tmp_path])
    assert errors(result.findings) == [("load.too-large", "big.yaml", 1)]
    assert "11 MiB" in result.findings[0].message
    assert "AMLOPS_MAX_MANIFEST_BYTES" in result.findings[0].message


def test_the_size_limit_is_raised_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.yaml").write_text(MODEL.format(i=1))
    monkeypatch.setenv("AMLOPS_MAX_MANIFEST_BYTES", "64")
    assert errors(load_tree([tmp_path]).findings) == [("load.too-large", "m.yaml", 1)]
    monkeypatch.setenv("AMLOPS_MAX_MANIFEST_BYTES", "1KiB")
    assert errors(load_tree([tmp_path]).findings) == []


def test_texts_from_git_revisions_are_held_to_the_size_limit() -> None:
    """``amlops plan`` passes the YAML of a revision as text; it is checked like a file."""
    text = MODEL.format(i=1) + "# " + "é" * 600 + "\n"  # 2 bytes per character in UTF-8
    report = validate_paths(
        [],
        texts={"manifests/m.yaml": text},
        check_files=False,
        sdk=False,
        limits=Limits(max_manifest_bytes=1024),
    )
    assert errors(report.findings) == [("load.too-large", "m.yaml", 1)]


def test_too_many_documents_in_one_file_is_refused_at_the_first_one_over(tmp_path: Path) -> None:
    (tmp_path / "docs.yaml").write_text("---\n".join(MODEL.format(i=i) for i in range(12)))
    result = load_tree([tmp_path], limits=Limits(max_yaml_documents=10))
    # document k (from 0) starts on line 8k + 1: 7 lines each, then a `---` line
    assert errors(result.findings) == [("load.too-many-documents", "docs.yaml", 81)]


def test_empty_documents_count_too() -> None:
    with pytest.raises(YamlLimitError) as err:
        list(load_documents("empty.yaml", "---\n" * 50, Limits(max_yaml_documents=10)))
    assert err.value.rule == "load.too-many-documents"


def test_a_named_pipe_called_yaml_is_refused_not_read_forever(tmp_path: Path) -> None:
    """Reading a FIFO blocks until someone writes to it: validation used to hang."""
    os.mkfifo(tmp_path / "pipe.yaml")
    done: list[list[tuple[str, str, int]]] = []
    worker = threading.Thread(
        target=lambda: done.append(errors(load_tree([tmp_path]).findings)), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert done == [[("load.not-a-file", "pipe.yaml", 1)]]


def test_a_yaml_link_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    """Issue 8 item 2: the link's target used to be parsed and its values echoed in findings."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    (repo / ".git").mkdir(parents=True)
    (repo / "manifests").mkdir()
    outside.mkdir()
    (outside / "secret.yaml").write_text("apiVersion: hunter2-password\nkind: Model\n")
    (repo / "manifests" / "creds.yaml").symlink_to(outside / "secret.yaml")
    report = validate_paths([repo / "manifests"], sdk=False)
    assert errors(report.findings) == [("load.outside-root", "creds.yaml", 1)]
    assert all("hunter2" not in f.message for f in report.findings)


def test_yaml_in_a_linked_folder_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    (repo / ".git").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.yaml").write_text("apiVersion: hunter2-password\n")
    (repo / "linked").symlink_to(outside)
    report = validate_paths([repo / "linked"], sdk=False)
    assert errors(report.findings) == [("load.outside-root", "secret.yaml", 1)]
    assert all("hunter2" not in f.message for f in report.findings)


def test_yaml_links_inside_the_repository_still_load(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "shared").mkdir()
    (repo / "manifests").mkdir()
    (repo / "shared" / "m.yaml").write_text(MODEL.format(i=1))
    (repo / "manifests" / "m.yaml").symlink_to(repo / "shared" / "m.yaml")
    result = load_tree([repo / "manifests"])
    assert [m.name for m in result.manifests] == ["m1"]
    assert errors(result.findings) == []


def test_limits_parse_units_and_reject_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("X", "20GiB") == 20 * GiB
    assert parse_size("X", "512M") == 512 * MiB
    assert parse_size("X", "1_000_000") == 1_000_000
    with pytest.raises(LimitsError, match="AMLOPS_MAX_TREE_FILES"):
        Limits.from_env({"AMLOPS_MAX_TREE_FILES": "lots"})
    with pytest.raises(LimitsError, match="greater than 0"):
        Limits.from_env({"AMLOPS_MAX_TREE_FILES": "0"})


def test_a_bad_limit_variable_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMLOPS_MAX_YAML_NODES", "many")
    assert main(["validate", str(BOMB)]) == 2
    assert "AMLOPS_MAX_YAML_NODES" in capsys.readouterr().err


def test_the_pulumi_program_stops_before_declaring_anything(tmp_path: Path) -> None:
    """`pulumi up` reads the manifests through the same core: the bomb and a YAML link out of
    the repository are errors it cannot attribute to a kind, so nothing is declared."""
    from infra.config import StackConfig
    from infra.program import load_platform
    from infra.specs import ManifestError

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    manifests = repo / "manifests"
    shutil.copytree(ROOT / "manifests" / "platform", manifests)
    shutil.copy(BOMB, manifests)
    (tmp_path / "secret.yaml").write_text("apiVersion: hunter2-password\n")
    (manifests / "creds.yaml").symlink_to(tmp_path / "secret.yaml")
    config = StackConfig(
        stack="dev",
        environment="dev",
        manifests=manifests,
        project_dir=repo,
        commit="0123456789abcdef",
        location="westeurope",
        tags={},
        operator=None,
    )
    with pytest.raises(ManifestError) as err:
        load_platform(config, warn=pytest.fail)
    assert errors(err.value.findings) == [
        ("load.outside-root", "creds.yaml", 1),
        ("load.alias-limit", BOMB.name, 15),
    ]
