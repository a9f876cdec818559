"""The plan comment says what a reviewer needs, as Atlantis' does (issue 10 item 7): the commits
planned, deletions first, which findings the change introduces and which the base already had,
who applies the change, and the file of every change; the JSON plan carries the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from amlops.cli import main
from amlops.cli.plan import MARKER, marker
from amlops.core.findings import Finding
from amlops.core.plan import split_findings

from .conftest import git

COMPUTE = Path("manifests/platform/compute.yaml")
ENDPOINT = Path("manifests/endpoints/support-online.yaml")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _plan(capsys: pytest.CaptureFixture[str], output: str) -> tuple[int, str]:
    code = main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD", "-o", output])
    return code, capsys.readouterr().out


def _commit(repo: Path) -> None:
    git(repo, "commit", "-qam", "change")


@pytest.fixture
def deleted_and_updated(repo: Path) -> Path:
    text = COMPUTE.read_text()
    COMPUTE.write_text(text[: text.rindex("---")])  # delete the prod cluster
    _edit(ENDPOINT, "blue: 90", "blue: 80")
    _edit(ENDPOINT, "green: 10", "green: 20")
    _commit(repo)
    return repo


def test_comment_names_both_commits_without_links(
    deleted_and_updated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = git(deleted_and_updated, "rev-parse", "HEAD~1", "HEAD").split()
    _, md = _plan(capsys, "markdown")
    assert f"`HEAD~1` at `{base[:7]}` → `HEAD` at `{head[:7]}`" in md
    # full SHAs only inside code spans: GitHub would turn a bare one into a link
    assert f"base `{base}`, head `{head}`" in md
    assert not re.search(rf"(?<!`){base}|(?<!`){head}", md)
    data = json.loads(_plan(capsys, "json")[1])
    assert (data["base_sha"], data["head_sha"]) == (base, head)


def test_comment_ends_with_the_marker_ci_updates_it_by(
    deleted_and_updated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, md = _plan(capsys, "markdown")
    assert md.rstrip("\n").split("\n")[-1] == "<!-- amlops-plan path=manifests -->"
    assert MARKER.findall(md) == ["<!-- amlops-plan path=manifests -->"]
    assert json.loads(_plan(capsys, "json")[1])["marker"] == marker("manifests")


@pytest.mark.parametrize("path", ["a-->b", "x --!> <script>", "dir with spaces/ü"])
def test_a_hostile_path_cannot_end_the_marker_comment_early(path: str) -> None:
    line = marker(path)
    assert line.startswith("<!-- amlops-plan path=") and line.count("-->") == 1
    assert line.endswith(" -->") and "<" not in line[4:] and "!" not in line[4:]
    assert MARKER.fullmatch(line)


def test_deletions_are_emphasised_with_count_and_names(
    deleted_and_updated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, md = _plan(capsys, "markdown")
    warning = "> ⚠️ **This change will delete 1 object(s):** `ComputeCluster/gpu-a100` in"
    (line,) = [x for x in md.split("\n") if x.startswith(warning)]
    assert "mlw-platform-prod" in line
    assert md.index(warning) < md.index("| | object |")  # above the table, not lost in it
    assert json.loads(_plan(capsys, "json")[1])["deletes"] == ["ComputeCluster/gpu-a100"]


def test_one_line_says_which_engine_applies_what(
    deleted_and_updated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, md = _plan(capsys, "markdown")
    (line,) = [x for x in md.split("\n") if x.startswith("**Applied after merge by**")]
    assert "Pulumi (`pulumi up` on `infra/`) for ComputeCluster" in line
    assert "the amlops operator (reconciles the custom resources) for Endpoint" in line
    data = json.loads(_plan(capsys, "json")[1])
    assert list(data["applied_by"].items()) == [
        ("pulumi", ["ComputeCluster"]),
        ("operator", ["Endpoint"]),
    ]


def test_every_change_names_the_file_that_holds_it(
    deleted_and_updated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(_plan(capsys, "json")[1])
    files = {(c["action"], c["kind"]): (c["file"], c["line"]) for c in data["changes"]}
    assert files[("delete", "ComputeCluster")][0] == COMPUTE.as_posix()
    assert files[("update", "Endpoint")][0] == ENDPOINT.as_posix()
    _, md = _plan(capsys, "markdown")
    file, line = files[("update", "Endpoint")]
    assert f"| `{file}:{line}` |" in md


# the example's one warning: its catalog pipeline's registry component cannot be checked offline
UNCHECKED = "ref.component-unchecked"


def _rules(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(f["rule"] for f in findings if f["rule"] != UNCHECKED)


def test_findings_are_split_into_introduced_and_already_on_the_base(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(COMPUTE, "maxInstances: 2", "maxInstances: 9")  # an error the base already has
    _commit(repo)
    # the head moves that error down two lines and adds one of its own
    COMPUTE.write_text("# dev and prod clusters\n\n" + COMPUTE.read_text())
    _edit(ENDPOINT, "blue: 90", "blue: 95")
    _commit(repo)
    code, out = _plan(capsys, "json")
    data = json.loads(out)
    assert code == 1
    assert _rules(data["findings_existing"]) == ["compute.dev-max-instances"]
    assert "endpoint.traffic" in _rules(data["findings_introduced"])
    assert "compute.dev-max-instances" not in _rules(data["findings_introduced"])
    assert _rules(data["findings"]) == sorted(
        [*_rules(data["findings_introduced"]), "compute.dev-max-instances"]
    )
    _, md = _plan(capsys, "markdown")
    introduced = md.index("introduced by this change block it")
    existing = md.index("**Already on the base** `HEAD~1`, not introduced by this change: 2")
    assert introduced < md.index("`endpoint.traffic`") < existing
    assert existing < md.index("`compute.dev-max-instances`")
    assert "still fail the check" in md


def test_a_change_that_only_fixes_says_so(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(COMPUTE, "maxInstances: 2", "maxInstances: 9")
    _commit(repo)
    _edit(COMPUTE, "maxInstances: 9", "maxInstances: 2")
    _commit(repo)
    code, md = _plan(capsys, "markdown")
    assert code == 0
    # what is left is the example's warning, already on the base: nothing blocks
    assert "compute.dev-max-instances" not in md and f"`{UNCHECKED}`" in md
    assert "✔️ This change fixes 1 finding(s) of the base." in md
    assert json.loads(_plan(capsys, "json")[1])["findings_fixed"] == 1


def _finding(rule: str, line: int, name: str = "m", field: str = "spec.x") -> Finding:
    return Finding("a.yaml", line, 1, rule, "msg", kind="Model", name=name, field=field)


def test_findings_match_by_rule_file_object_and_field_not_line() -> None:
    base = [_finding("r1", 3), _finding("r2", 4)]
    head = [_finding("r1", 9), _finding("r2", 4, name="other"), _finding("r1", 12)]
    split = split_findings(head, base)
    assert [(f.rule, f.line) for f in split.existing] == [("r1", 9)]
    # the same finding twice on the head, once on the base: one of them is new
    assert [(f.rule, f.name, f.line) for f in split.introduced] == [
        ("r2", "other", 4),
        ("r1", "m", 12),
    ]
    assert split.fixed == 1  # r2 on object m is gone


def test_a_check_the_base_cannot_run_counts_only_on_objects_the_change_touches() -> None:
    head = [_finding("azureml.schema", 3, name="old"), _finding("azureml.schema", 3, name="new")]
    split = split_findings(
        head, [], blind=lambda f: f.rule == "azureml.schema", touched={("Model", "new")}
    )
    assert [f.name for f in split.existing] == ["old"]
    assert [f.name for f in split.introduced] == ["new"]
