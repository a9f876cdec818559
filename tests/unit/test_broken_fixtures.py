"""Every broken fixture breaks one thing and must produce exactly that finding at that line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.core.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken"
PLATFORM = ROOT / "manifests" / "platform"
ENVIRONMENTS = ROOT / "manifests" / "environments"
MODELS = ROOT / "manifests" / "models"
EXPECT = re.compile(r"^# expect: rule=(?P<rule>\S+) line=(?P<line>\d+)$", re.M)
FIXTURES = sorted(BROKEN.glob("*.yaml"))


def _expected(fixture: Path) -> tuple[str, int]:
    match = EXPECT.search(fixture.read_text())
    assert match, f"{fixture} has no '# expect:' header"
    return match["rule"], int(match["line"])


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_broken_fixture_reports_its_rule_at_its_line(fixture: Path) -> None:
    rule, line = _expected(fixture)
    report = validate_paths([PLATFORM, ENVIRONMENTS, MODELS, fixture])
    errors = [f for f in report.findings if f.is_error]
    assert [(f.rule, Path(f.file).name, f.line) for f in errors] == [(rule, fixture.name, line)]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_cli_exits_1_and_names_file_and_line(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule, line = _expected(fixture)
    paths = [str(p) for p in (PLATFORM, ENVIRONMENTS, MODELS, fixture)]
    code = main(["validate", *paths, "--output", "github"])
    out = capsys.readouterr().out
    assert code == 1
    shown = fixture.relative_to(Path.cwd()) if fixture.is_relative_to(Path.cwd()) else fixture
    assert f"file={shown},line={line}," in out
    assert f"title={rule}" in out


def test_example_platform_validates_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / "manifests"), "--output", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data["errors"]
    assert data["errors"] == []
    assert data["kinds"]["Workspace"] == 2
    assert data["manifests"] == sum(data["kinds"].values())


def test_sdk_verdicts_are_remembered_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    from amlops.core import azureml

    calls: list[str] = []
    real = azureml._loader

    def counting(name: str) -> azureml.Loader:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(azureml, "_loader", counting)
    bad = {"name": "m", "version": "1", "path": "x", "type": "pickle_model"}
    first = azureml.verdict("load_model", bad, "/tmp/m.yaml")
    again = azureml.verdict("load_model", bad, "/tmp/m.yaml")
    assert first == again and first[0][0] == ("type",)
    assert calls == ["load_model"]
    azureml.verdict("load_model", {**bad, "type": "custom_model"}, "/tmp/m.yaml")
    assert calls == ["load_model", "load_model"]


def test_a_remembered_verdict_is_not_reused_when_a_file_it_read_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amlops.core import azureml

    calls: list[str] = []
    monkeypatch.setattr(azureml, "_loader", lambda name: lambda **_: calls.append(name))
    conda = tmp_path / "conda.yaml"
    conda.write_text("name: env\ndependencies: [python=3.11]\n")
    env = {"name": "e", "version": "1", "image": "img:1", "conda_file": "conda.yaml"}
    origin = str(tmp_path / "env.yaml")
    azureml.verdict("load_environment", env, origin)
    azureml.verdict("load_environment", env, origin)
    assert len(calls) == 1
    conda.write_text("name: [unclosed\n")
    azureml.verdict("load_environment", env, origin)
    assert len(calls) == 2
