"""`amlops plan --infra`: declared resources offline, or a real preview via the Automation API."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult, OnOutput
from semver import VersionInfo

from amlops.cli import main, plan_infra
from tests.infra.conftest import ROOT


def plan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", "--infra", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lists_the_example_platform(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plan(capsys, str(ROOT / "manifests"), "--stack", "dev", "--output", "json")
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "declared" and data["stateDiff"] is False
    resources = {r["name"]: r for r in data["resources"]}
    assert set(resources["mlw-platform-dev"]) >= {"type", "name", "parent", "inputs"}
    mlw = resources["mlw-platform-dev-mlw"]
    assert mlw["type"] == "azure-native:machinelearningservices:Workspace"
    assert mlw["parent"] == "mlw-platform-dev"
    assert set(mlw["dependencies"]) == {
        f"mlw-platform-dev-{s}" for s in ("rg", "st", "kv", "appi", "cr")
    }
    computes = [r for r in data["resources"] if r["type"].endswith(":Compute")]
    assert [c["inputs"]["computeName"] for c in computes] == ["gpu-a100", "gpu-t4"]
    grants = [r["name"] for r in data["resources"] if r["type"].endswith(":RoleAssignment")]
    assert len(grants) == 4
    assert data["outputs"]["workspaceNames"] == ["mlw-platform-dev"]


def test_text_says_it_is_no_diff(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plan(capsys, str(ROOT / "manifests"), "--stack", "prod")
    assert code == 0
    assert "no diff" in out and "mock monitor" in out
    assert "mlw-platform-prod-kv  (azure-native:keyvault:Vault)  [protected]" in out
    assert "role=Reader" in out
    assert "depends on: mlw-platform-prod-mlw" in out


def test_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = plan(capsys, str(ROOT / "manifests"), "--stack", "dev", "--output", "markdown")
    assert code == 0
    assert "| resource | type | parent | depends on | key inputs |" in out
    assert "`vmSize=Standard_NC4as_T4_v3`" in out


def test_findings_exit_1_and_name_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "manifests" / "platform", tmp_path / "platform")
    compute = tmp_path / "platform" / "compute.yaml"
    compute.write_text(
        compute.read_text(encoding="utf-8").replace("minInstances: 0", "minInstances: 3", 1),
        encoding="utf-8",
    )
    code, out, err = plan(capsys, str(tmp_path), "--stack", "dev")
    assert code == 1
    assert out == ""
    assert (
        "platform/compute.yaml:10:17: error [compute.dev-scale-to-zero] "
        "ComputeCluster/gpu-a100 spec.minInstances: Dev clusters scale to zero"
    ) in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan(capsys, str(ROOT / "manifests"))[0] == 2  # no --stack
    code, _, err = plan(capsys, str(ROOT / "manifests"), "--stack", "nosuch")
    assert code == 2
    assert "Pulumi.nosuch.yaml does not exist" in err


def test_preview_without_the_pulumi_cli_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = plan(capsys, str(ROOT / "manifests"), "--stack", "dev", "--preview")
    assert code == 2
    assert "needs the Pulumi CLI on PATH" in " ".join(err.split())


class RecordingCommand(auto.PulumiCommand):
    """Stands in for the CLI: records each command line and answers like `pulumi` would."""

    def __init__(self) -> None:  # no `pulumi version` subprocess
        self.command = "pulumi"
        self.version = VersionInfo(3, 200, 0)  # file-based event log (older than 3.205)
        self.calls: list[tuple[list[str], str]] = []

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Any,
        on_output: OnOutput | None = None,
        on_error: OnOutput | None = None,
    ) -> CommandResult:
        args = ["--non-interactive", *args]
        self.calls.append((args, cwd))
        if "preview" in args:
            summary = {"summaryEvent": {"resourceChanges": {"create": 15, "same": 0}}}
            event_log = Path(args[args.index("--event-log") + 1])
            event_log.write_text(json.dumps({"sequence": 1, "timestamp": 1, **summary}) + "\n")
            if on_output:
                on_output("Previewing update (dev)")
        return CommandResult(stdout="", stderr="", code=0)


def test_preview_builds_the_pulumi_commands(capsys: pytest.CaptureFixture[str]) -> None:
    command = RecordingCommand()
    lines: list[str] = []
    code = plan_infra.run_preview(ROOT, "dev", "text", command=command, echo=lines.append)
    assert code == 0
    (select, _), (preview, cwd) = command.calls
    assert select == ["--non-interactive", "stack", "select", "--stack", "dev"]
    assert cwd == str(ROOT)
    assert preview[:2] == ["--non-interactive", "preview"]
    assert "--diff" in preview
    pairs = dict(itertools.pairwise(preview))
    assert pairs["--stack"] == "dev"
    assert pairs["--policy-pack"] == str(ROOT / "policies" / "pulumi-policy-pack")
    assert pairs["--exec-kind"] == "auto.local"  # the project's own program, main: infra/
    assert pairs["--color"] == "never"
    assert lines == [
        "Previewing update (dev)",
        "pulumi preview of stack dev: 15 to create, 0 to same",
    ]


def test_markdown_escapes_what_a_manifest_put_into_names_and_inputs() -> None:
    """Defence in depth for the PR comment: a declared name or input that holds Markdown, HTML,
    a mention or a pipe renders as text in one table row; a credential-shaped input is masked."""
    from infra.offline import DeclaredResource, OfflineRun

    hostile = "gpu|x`` <img src=x> @here [a](http://x) ###"
    token = "ghp_" + "a" * 36
    run = OfflineRun(
        resources=[
            DeclaredResource(
                urn="urn:x",
                type="azure-native:machinelearningservices:Compute",
                name=hostile,
                parent="mlw @team",
                custom=True,
                protect=False,
                dependencies=("a|b",),
                inputs={"computeName": hostile, "properties": {"properties": {"vmSize": token}}},
            )
        ],
        outputs={},
        duplicate_urns=[],
    )
    out = plan_infra.markdown(run, plan_infra.Meta("dev", "dev", "m`d"))
    rows = [line for line in out.splitlines() if line.startswith("| ") and "urn" not in line]
    row = rows[-1]
    unescaped_pipes = len([i for i, ch in enumerate(row) if ch == "|" and row[i - 1 : i] != "\\"])
    assert unescaped_pipes == 6  # five cells: the hostile pipes did not add columns
    # inside a code span nothing is interpreted; outside, no tag, mention or link survives
    prose = re.sub(r"(`+)(.+?)\1", "", out)
    assert "<img" not in prose and "@here" not in prose and "@team" not in prose
    assert "](http" not in prose
    assert token not in out
