"""The repository config ``amlops.yaml``: default workspace, external assets, policy settings,
inline suppressions, and ``amlops policies`` showing where each change came from."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.core.config import find_config
from amlops.core.validate import Report, validate_paths

from .conftest import git

COMPUTE = """\
$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
name: cpu-cluster
type: amlcompute
size: Standard_DS3_v2
min_instances: 0
max_instances: 2
tags: {owner: ml-team, cost-center: "4242"}
"""
JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
settings:
  default_compute: azureml:gpu-cluster
jobs:
  train:
    type: command
    command: echo hi
    environment: azureml:team-env:3
"""
CONFIG = """\
workspace:
  name: ml-dev
  subscription: 00000000-0000-0000-0000-000000000000
  resourceGroup: rg-ml-dev
  location: westeurope
external:
  computes: [gpu-cluster]
  environments: ["team-env:3"]
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Git repository of plain Azure ML files and a repository config; the working
    directory is its root."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "compute.yml").write_text(COMPUTE)
    (root / "job.yml").write_text(JOB)
    (root / "amlops.yaml").write_text(CONFIG)
    git(root, "init", "-q")
    monkeypatch.chdir(root)
    return root


def _validate(root: Path) -> Report:
    return validate_paths([root], sdk=False)


def _rules(report: Report) -> list[tuple[str, int, str]]:
    return [(Path(f.file).name, f.line, f.rule) for f in report.findings]


def test_plain_files_and_a_small_config_validate_clean(repo: Path) -> None:
    report = _validate(repo)
    assert report.findings == []
    # The config is not a manifest: no unknown kind, no Workspace built from it.
    assert report.kinds() == {"ComputeCluster": 1, "Pipeline": 1}
    assert {m.workspace for m in report.manifests} == {"ml-dev"}
    config = find_config([repo])
    assert config.workspace is not None and config.workspace.resource_group == "rg-ml-dev"


def test_without_config_plain_files_have_no_workspace(repo: Path) -> None:
    (repo / "amlops.yaml").unlink()
    assert {r for _, _, r in _rules(_validate(repo))} == {"load.no-default-workspace"}


def test_without_a_workspace_the_sdk_still_checks_each_plain_file(repo: Path) -> None:
    """No workspace to bind to hides no mistake: the file's own errors are reported at their
    line next to the missing workspace."""
    (repo / "amlops.yaml").unlink()
    (repo / "compute.yml").write_text(COMPUTE.replace("max_instances: 2", "max_instances: many"))
    report = validate_paths([repo])
    found = {(Path(f.file).name, f.line, f.rule) for f in report.findings}
    assert ("compute.yml", 6, "azureml.schema") in found
    assert {r for _, _, r in found} == {"load.no-default-workspace", "azureml.schema"}


def test_external_assets_are_allowed_and_others_still_checked(repo: Path) -> None:
    (repo / "amlops.yaml").write_text(CONFIG.replace('"team-env:3"', '"team-env:2"'))
    assert _rules(_validate(repo)) == [("job.yml", 9, "ref.environment")]
    (repo / "amlops.yaml").write_text("workspace: {name: ml-dev}\nexternal:\n  mode: permissive\n")
    assert _validate(repo).findings == []


def test_bad_config_values_are_findings_at_their_line(repo: Path) -> None:
    (repo / "amlops.yaml").write_text(
        "workspace:\n"
        "  name: ml-dev\n"
        "  subscription: not-a-guid\n"
        "policies:\n"
        "  severity: {tags.required: fatal}\n"
        "  rules: [../elsewhere]\n"
        "colour: blue\n"
    )
    found = {(f.line, f.rule) for f in _validate(repo).findings if f.file == "amlops.yaml"}
    assert {(1, "config.invalid"), (3, "config.invalid"), (5, "config.invalid")} <= found
    # A config that does not validate binds nothing: half a config is worse than none.
    assert any(f.rule == "load.no-default-workspace" for f in _validate(repo).findings)


def _untagged(repo: Path, min_instances: str = "min_instances: 0") -> None:
    text = COMPUTE.replace('tags: {owner: ml-team, cost-center: "4242"}\n', "")
    (repo / "compute.yml").write_text(text.replace("min_instances: 0", min_instances))


def test_disable_and_severity(repo: Path) -> None:
    _untagged(repo, "min_instances: 3")
    assert _rules(_validate(repo)) == [
        ("compute.yml", 1, "tags.required"),
        ("compute.yml", 5, "compute.min-below-max"),
    ]
    with (repo / "amlops.yaml").open("a") as f:
        f.write(
            "policies:\n"
            "  disable: [tags.required, no.such-rule]\n"
            "  severity: {compute.min-below-max: warning}\n"
        )
    report = _validate(repo)
    assert report.ok
    assert _rules(report) == [
        ("amlops.yaml", 10, "config.unknown-rule"),
        ("compute.yml", 5, "compute.min-below-max"),
    ]
    assert report.findings[1].severity == "warning"


def test_exceptions_match_rule_kind_name_and_files(repo: Path) -> None:
    _untagged(repo)
    with (repo / "amlops.yaml").open("a") as f:
        f.write(
            "policies:\n"
            "  exceptions:\n"
            "    - {rule: tags.required, kind: ComputeCluster, name: cpu-cluster,\n"
            "       files: '*.yml', reason: shared cluster billed centrally}\n"
            "    - {rule: tags.required, name: other, reason: gone}\n"
        )
    assert _rules(_validate(repo)) == [("amlops.yaml", 13, "config.exception-unused")]


def test_an_expired_exception_is_a_finding_and_no_longer_applies(repo: Path) -> None:
    _untagged(repo)
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    with (repo / "amlops.yaml").open("a") as f:
        f.write(
            "policies:\n"
            "  exceptions:\n"
            f"    - {{rule: tags.required, reason: until the migration, expires: {yesterday}}}\n"
        )
    assert _rules(_validate(repo)) == [
        ("amlops.yaml", 11, "config.exception-expired"),
        ("compute.yml", 1, "tags.required"),
    ]


def test_extra_rule_folder_in_the_same_format(repo: Path) -> None:
    (repo / "rules").mkdir()
    (repo / "rules" / "small.yaml").write_text(
        "id: team.small-clusters\n"
        "title: Team clusters stay small\n"
        "severity: error\n"
        "description: at most one node\n"
        "match: {kinds: [ComputeCluster]}\n"
        "condition:\n"
        "  properties:\n"
        "    spec:\n"
        "      properties:\n"
        "        maxInstances: {maximum: 1}\n"
    )
    with (repo / "amlops.yaml").open("a") as f:
        f.write("policies:\n  rules: [rules]\n")
    assert _rules(_validate(repo)) == [("compute.yml", 6, "team.small-clusters")]


def test_extra_rule_files_are_read_like_manifests(repo: Path, tmp_path: Path) -> None:
    """A rules folder is as untrusted as the manifests: an alias bomb stops at the alias
    limit and a link out of the repository is refused, each a finding at the amlops.yaml
    line that names the folder."""
    rules = repo / "rules"
    rules.mkdir()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (rules / "bomb.yaml").write_text(bomb)
    secret = tmp_path / "elsewhere.yaml"
    secret.write_text("id: outside.rule\n")
    (rules / "link.yaml").symlink_to(secret)
    with (repo / "amlops.yaml").open("a") as f:
        f.write("policies:\n  rules: [rules]\n")
    report = _validate(repo)
    config = [f for f in report.findings if f.file.endswith("amlops.yaml")]
    assert [(f.line, f.rule) for f in config] == [(10, "config.invalid")] * 2
    assert "AMLOPS_MAX_YAML_NODES" in config[0].message and "bomb.yaml" in config[0].message
    assert "outside" in config[1].message and "link.yaml" in config[1].message


def test_inline_suppression_on_the_line_needs_a_reason(repo: Path) -> None:
    text = COMPUTE.replace("max_instances: 2", "max_instances: 1").replace(
        "min_instances: 0", "min_instances: 3  # amlops: ignore[compute.min-below-max]"
    )
    (repo / "compute.yml").write_text(text)
    assert _rules(_validate(repo)) == [
        ("compute.yml", 5, "compute.min-below-max"),
        ("compute.yml", 5, "config.suppression-no-reason"),
    ]
    (repo / "compute.yml").write_text(text.replace("]", "] warm pool for the demo"))
    assert _validate(repo).findings == []


def test_policies_shows_the_effective_set_and_where_it_changed(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (repo / "amlops.yaml").open("a") as f:
        f.write("policies:\n  disable: [tags.required]\n  severity: {azureml.name: warning}\n")
    assert main(["policies", "--output", "json"]) == 0
    rows = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tags.required"]["enabled"] is False
    assert rows["tags.required"]["changes"] == ["disabled: amlops.yaml:10"]
    assert rows["azureml.name"]["severity"] == "warning"
    assert rows["azureml.name"]["changes"] == ["severity warning: amlops.yaml:11"]
    assert main(["policies"]) == 0
    assert "amlops.yaml:10" in capsys.readouterr().out


def test_exclude_leaves_files_out_of_every_check(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fixtures broken on purpose and generated files are left out by `exclude:` (.gitignore
    syntax): in a folder walk and when named on the command line, as pre-commit names them."""
    broken = COMPUTE.replace("max_instances: 2", "max_instances: lots")
    (repo / "fixtures").mkdir()
    (repo / "fixtures" / "compute.yml").write_text(broken.replace("cpu-cluster", "cpu-two"))
    (repo / "deep" / "er").mkdir(parents=True)
    (repo / "deep" / "er" / "out.generated.yml").write_text(broken.replace("cpu-", "gen-"))
    assert {(Path(f.file).parent.name, f.rule) for f in _validate(repo).findings} == {
        ("fixtures", "schema"),
        ("er", "schema"),
    }
    with (repo / "amlops.yaml").open("a") as f:
        f.write("exclude:\n  - /fixtures/\n  - '*.generated.yml'\n")
    report = _validate(repo)
    assert report.findings == []
    assert report.kinds() == {"ComputeCluster": 1, "Pipeline": 1}
    assert main(["validate", "--no-sdk", "fixtures/compute.yml", "compute.yml"]) == 0
    capsys.readouterr()
    # Without the pattern the named file is read again: the exclusion did the work.
    (repo / "amlops.yaml").write_text(CONFIG + "exclude: ['*.generated.yml']\n")
    assert main(["validate", "--no-sdk", "fixtures/compute.yml"]) == 1
    assert "fixtures/compute.yml:" in capsys.readouterr().out


def test_exclude_patterns_are_checked(repo: Path) -> None:
    (repo / "amlops.yaml").write_text(CONFIG + "exclude: [fixtures, 3]\n")
    found = [(f.line, f.rule) for f in _validate(repo).findings if f.file == "amlops.yaml"]
    assert found == [(9, "config.invalid")]
