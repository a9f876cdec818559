"""Findings as CI systems read them: one line each in a pipe, SARIF, GitHub and GitLab."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from amlops.cli import common, formats, main
from amlops.core.findings import Finding, Severity

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BROKEN = FIXTURES / "broken"
SPACED = FIXTURES / "output" / "gpu not allowed.yaml"
CONTEXT = [ROOT / "manifests" / n for n in ("platform", "environments", "models")]
SARIF_SCHEMA = json.loads((FIXTURES / "sarif" / "sarif-schema-2.1.0.json").read_text())
LINE = re.compile(r"^[^:]+:\d+:\d+: (error|warning) [\w.-]+ .+$")
EXPECT = re.compile(r"^# expect: rule=(?P<rule>\S+) line=(?P<line>\d+)$", re.M)
BROKEN_FIXTURES = sorted(BROKEN.glob("*.yaml"))


def _validate(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["validate", *map(str, args)])
    return code, capsys.readouterr().out


def _shown(path: Path) -> str:
    """How findings name a file: relative to the working directory when inside it."""
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


# -- text ---------------------------------------------------------------------------------------


def test_in_a_pipe_text_is_one_line_per_finding_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixtures = [BROKEN / "gpu-not-allowed.yaml", BROKEN / "yaml-syntax.yaml"]
    code, out = _validate(capsys, *CONTEXT, *fixtures, "--no-sdk")
    assert code == 1
    *lines, summary = out.splitlines()
    assert len(lines) == 2 and all(LINE.match(line) for line in lines), out
    assert lines[0].startswith(f"{_shown(fixtures[0])}:8:11: error compute.gpu-vm-allowlist ")
    assert summary.startswith("validation failed: 2 errors, 0 warnings (")


@pytest.mark.parametrize("fixture", BROKEN_FIXTURES, ids=[f.stem for f in BROKEN_FIXTURES])
def test_each_broken_fixture_is_its_rule_at_its_line(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    match = EXPECT.search(fixture.read_text())
    assert match
    code, out = _validate(capsys, *CONTEXT, fixture)
    assert code == 1
    errors = [line for line in out.splitlines() if LINE.match(line) and " error " in line]
    assert len(errors) == 1, out
    assert errors[0].startswith(f"{_shown(fixture)}:{match['line']}:")
    assert f": error {match['rule']} " in errors[0]


def test_a_message_is_one_line_whatever_it_holds() -> None:
    finding = Finding("m.yaml", 3, 5, "schema", "first\nsecond\r\x1b[31mred", kind="Model")
    line = formats.finding_line(finding)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "m.yaml:3:5: error schema first\\nsecond\\r\\x1b[31mred"
    assert LINE.match(line)


def test_a_terminal_gets_the_table_and_either_can_be_forced(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = BROKEN / "gpu-not-allowed.yaml"
    monkeypatch.setenv("FORCE_COLOR", "1")  # colours welcome is not a terminal
    _, out = _validate(capsys, *CONTEXT, fixture, "--no-sdk")
    assert LINE.match(out.splitlines()[0])
    _, out = _validate(capsys, *CONTEXT, fixture, "--no-sdk", "--output", "table")
    assert not any(LINE.match(line) for line in out.splitlines())
    assert "compute.gpu-vm-allowlist" in out
    monkeypatch.setattr(common, "is_terminal", lambda: True)
    _, table = _validate(capsys, *CONTEXT, fixture, "--no-sdk")
    assert "─" in table and not any(LINE.match(line) for line in table.splitlines())
    _, out = _validate(capsys, *CONTEXT, fixture, "--no-sdk", "--output", "text")
    assert LINE.match(out.splitlines()[0])


# -- SARIF --------------------------------------------------------------------------------------


def _sarif(capsys: pytest.CaptureFixture[str], *paths: Path) -> dict[str, Any]:
    code, out = _validate(capsys, *CONTEXT, *paths, "--no-sdk", "--output", "sarif")
    assert code == 1
    sarif: dict[str, Any] = json.loads(out)
    Draft4Validator(SARIF_SCHEMA).validate(sarif)
    return sarif


def test_sarif_is_valid_and_describes_every_rule_it_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixtures = ("yaml-syntax", "dangling-model", "unknown-field", "gpu-not-allowed")
    (run,) = _sarif(capsys, *(BROKEN / f"{name}.yaml" for name in fixtures))["runs"]
    driver = run["tool"]["driver"]
    assert driver["version"] and driver["name"] == "amlops"
    rules = driver["rules"]
    used = {r["ruleId"] for r in run["results"]}
    assert {"load.yaml-syntax", "ref.model", "schema", "compute.gpu-vm-allowlist"} <= used
    assert used == {r["id"] for r in rules}
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    gpu = next(r for r in rules if r["id"] == "compute.gpu-vm-allowlist")
    assert "amlops explain compute.gpu-vm-allowlist" in gpu["help"]["text"]


def test_sarif_uris_are_relative_to_the_repository_and_percent_encoded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (run,) = _sarif(capsys, SPACED)["runs"]
    (result,) = run["results"]
    location = result["locations"][0]
    artifact = location["physicalLocation"]["artifactLocation"]
    assert artifact == {
        "uri": "tests/fixtures/output/gpu%20not%20allowed.yaml",
        "uriBaseId": "%SRCROOT%",
    }
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == ROOT.as_uri() + "/"
    assert location["physicalLocation"]["region"]["startLine"] == 8
    kinds = [(loc["kind"], loc["name"]) for loc in location["logicalLocations"]]
    assert kinds == [("resource", "ComputeCluster/gpu-expensive"), ("property", "spec.vmSize")]


def test_sarif_fingerprints_do_not_move_with_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "cluster.yaml"
    shutil.copy(BROKEN / "gpu-not-allowed.yaml", copy)
    before = _sarif(capsys, copy)["runs"][0]["results"][0]
    copy.write_text("# a comment\n# another\n" + copy.read_text())
    after = _sarif(capsys, copy)["runs"][0]["results"][0]
    assert after["locations"][0]["physicalLocation"]["region"]["startLine"] == 10
    assert before["partialFingerprints"] == after["partialFingerprints"]


# -- GitHub and GitLab --------------------------------------------------------------------------


def test_github_annotations_escape_and_have_no_stray_slash() -> None:
    loose = Finding("a, b:c%.yaml", 1, 1, "load.yaml-syntax", "bad\r\nyaml 100%")
    owned = Finding("m.yaml", 2, 3, "schema", "x", Severity.WARNING, kind="Model", name="m")
    first, second = formats.github_annotations([loose, owned])
    assert first == (
        "::error file=a%2C b%3Ac%25.yaml,line=1,col=1,title=load.yaml-syntax::bad%0D%0Ayaml 100%25"
    )
    assert second == "::warning file=m.yaml,line=2,col=3,title=schema Model/m::x"


def test_github_output_of_a_file_level_finding_has_no_stray_slash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)  # annotations name files from the checkout, not the cwd
    code, out = _validate(capsys, "yaml-syntax.yaml", "--output", "github")
    assert code == 1 and " /" not in out
    assert out.startswith("::error file=tests/fixtures/broken/yaml-syntax.yaml,line=8,col=1,")
    assert "title=load.yaml-syntax::" in out


def test_gitlab_code_quality_report(capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = [SPACED, BROKEN / "yaml-syntax.yaml"]
    code, out = _validate(capsys, *CONTEXT, *fixtures, "--no-sdk", "--output", "gitlab")
    assert code == 1
    report = json.loads(out)
    assert isinstance(report, list) and len(report) == 2
    for issue in report:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["severity"] in {"info", "minor", "major", "critical", "blocker"}
        assert isinstance(issue["location"]["lines"]["begin"], int)
    assert len({i["fingerprint"] for i in report}) == 2
    by_rule = {i["check_name"]: i["location"] for i in report}
    assert by_rule["compute.gpu-vm-allowlist"] == {
        "path": "tests/fixtures/output/gpu not allowed.yaml",
        "lines": {"begin": 8},
    }
    assert by_rule["load.yaml-syntax"]["path"] == "tests/fixtures/broken/yaml-syntax.yaml"


def test_plan_text_findings_in_a_pipe_are_lines(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(BROKEN / "gpu-not-allowed.yaml", repo / "manifests" / "platform" / "gpu.yaml")
    assert main(["plan", "manifests", "--base", "HEAD"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if LINE.match(line)]
    # every finding is one line: the error, and the example's warning (registry component)
    (line,) = [line for line in lines if ": error " in line]
    assert line.startswith("manifests/platform/gpu.yaml:8:11: error compute.gpu-vm-allowlist ")
    assert {line.split(" ")[2] for line in lines} == {
        "compute.gpu-vm-allowlist",
        "ref.component-unchecked",
    }
