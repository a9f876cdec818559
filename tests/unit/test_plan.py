"""``amlops plan`` between two commits shows exactly the changed fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amlops.cli import main

from .conftest import git

ROOT = Path(__file__).resolve().parents[2]


def _commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_plan_between_two_commits_lists_exactly_the_changed_fields(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoints = repo / "manifests" / "endpoints" / "support-online.yaml"
    _edit(endpoints, "blue: 90", "blue: 80")
    _edit(endpoints, "green: 10", "green: 20")
    compute = repo / "manifests" / "platform" / "compute.yaml"
    text = compute.read_text()
    compute.write_text(text[: text.rindex("---")])  # delete the prod cluster
    (repo / "manifests" / "models" / "extra.yaml").write_text(
        (repo / "manifests" / "models" / "slm-base.yaml")
        .read_text()
        .split("---")[0]
        .replace("name: slm-base", "name: slm-extra")
    )
    _commit(repo, "change")
    code = main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD", "-o", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data["findings"]
    summary = [(c["action"], c["kind"], c["name"], c["workspace"]) for c in data["changes"]]
    assert summary == [
        ("delete", "ComputeCluster", "gpu-a100", "mlw-platform-prod"),
        ("update", "Endpoint", "support-online", "mlw-platform-dev"),
        ("create", "Model", "slm-extra", "mlw-platform-dev"),
    ]
    update = data["changes"][1]
    assert update["fields"] == [
        {"path": "spec.endpoint.traffic.blue", "action": "change", "before": 90, "after": 80},
        {"path": "spec.endpoint.traffic.green", "action": "change", "before": 10, "after": 20},
    ]


def test_plan_against_the_working_tree_renders_markdown_with_findings(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "manifests" / "platform" / "compute.yaml", "maxInstances: 2", "maxInstances: 9")
    code = main(["plan", "manifests", "--base", "HEAD", "-o", "markdown"])
    out = capsys.readouterr().out
    assert code == 1  # the change breaks a policy
    assert "| ~ update | `ComputeCluster/gpu-a100` | mlw-platform-dev | pulumi |" in out
    assert "~ spec.maxInstances: 2 -> 9" in out
    assert "`compute.dev-max-instances`" in out


def test_deployments_are_diffed_by_name_not_position(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo / "manifests" / "endpoints" / "support-online.yaml"
    text = path.read_text()
    head, _, rest = text.partition("  deployments:\n")
    blue, green = rest.split("    - name: green\n")
    path.write_text(head + "  deployments:\n" + "    - name: green\n" + green + blue)
    assert main(["plan", "manifests", "--base", "HEAD", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changes"] == []


def test_unknown_revision_is_a_usage_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--base", "no-such-ref"]) == 2
    assert "git" in capsys.readouterr().err


def test_a_changed_scoring_script_is_an_update_even_without_yaml_changes(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    score = repo / "manifests" / "src" / "score" / "score.py"
    score.write_text(score.read_text() + "\n# tuned\n")
    (repo / "manifests" / "src" / "prep" / "helpers.py").write_text("X = 1\n")  # untracked
    assert main(["plan", "manifests", "--base", "HEAD", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    changed = {(c["kind"], c["name"]): [f["path"] for f in c["fields"]] for c in data["changes"]}
    assert changed == {
        ("Endpoint", "support-online"): [
            "spec.deployments[blue].code_configuration.code (content)",
            "spec.deployments[green].code_configuration.code (content)",
        ],
        ("Pipeline", "finetune-support-slm"): ["spec.job.jobs.prep.code (content)"],
    }
    _commit(repo, "tune")
    assert main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["changes"]] == ["support-online", "finetune-support-slm"]
