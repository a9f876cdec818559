"""The policy set: rules load from data, each can fire, and the CLI lists and explains them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amlops.cli import main
from amlops.core.policy import PolicyError, load_policies, read_policy
from amlops.core.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken"


def test_at_least_twelve_rules_ship_and_ids_are_unique() -> None:
    policies = load_policies().policies
    assert len(policies) >= 12
    assert len({p.id for p in policies}) == len(policies)


def test_policies_lists_every_rule_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "--output", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in listed] == [p.id for p in load_policies().policies]


def test_explain_prints_why_and_how_to_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "model.prod-retain"]) == 0
    out = capsys.readouterr().out
    assert "deletionPolicy" in out and "applies to: Model in prod" in out


def test_explain_unknown_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "no.such-rule"]) == 2
    assert "no policy 'no.such-rule'" in capsys.readouterr().err


def test_environment_scoped_rules_do_not_fire_elsewhere(tmp_path: Path) -> None:
    # Owner on a *dev* workspace is not caught by rbac.prod-no-owner (it only matches prod).
    text = (BROKEN / "prod-owner.yaml").read_text().replace("mlw-platform-prod", "mlw-platform-dev")
    (tmp_path / "dev-owner.yaml").write_text(text)
    report = validate_paths([ROOT / "manifests" / "platform", tmp_path])
    # Owner is not one of the roles the platform grants anywhere (rbac.supported-role), but
    # the prod-only rule stays silent in dev.
    assert [f.rule for f in report.errors] == ["rbac.supported-role"]


def test_warnings_do_not_fail_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "manifests" / "platform" / "workspaces.yaml").read_text()
    (tmp_path / "ws.yaml").write_text(
        text.replace("allowSharedKeyAccess: false", "allowSharedKeyAccess: true")
    )
    assert main(["validate", str(tmp_path), "--output", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {w["rule"] for w in data["warnings"]} == {"workspace.storage-no-shared-key"}


def test_a_broken_policy_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x.y\ntitle: t\nseverity: fatal\ndescription: d\nmatch: {kinds: [Model]}\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml"):
        read_policy(bad)


def test_sarif_output_is_sarif_2_1_0(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(ROOT / "manifests" / "platform"), str(BROKEN / "gpu-not-allowed.yaml")]
    assert main(["validate", *paths, "--output", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "compute.gpu-vm-allowlist"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 8


def test_schemas_and_policy_conditions_are_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    from amlops.core.schemas import load_schemas

    for schema in load_schemas().schemas.values():
        Draft202012Validator.check_schema(schema)
    for policy in load_policies().policies:
        if policy.condition is not None:
            Draft202012Validator.check_schema(policy.condition)


def test_validation_never_writes_schema_defaults_into_manifests(tmp_path: Path) -> None:
    text = (ROOT / "manifests" / "models" / "slm-base.yaml").read_text().split("---")[0]
    (tmp_path / "m.yaml").write_text(text.replace("  deletionPolicy: Delete\n", ""))
    report = validate_paths([ROOT / "manifests" / "platform", tmp_path], sdk=False)
    (model,) = report.of_kind("Model")
    assert "deletionPolicy" not in model.spec and "suspend" not in model.spec


def test_compiled_validators_are_cached_and_a_corrupt_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amlops.core.schemas import FastCheck

    monkeypatch.setenv("AMLOPS_CACHE_DIR", str(tmp_path))
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"const": 1}}}
    assert FastCheck(schema).is_valid({"a": 1})
    (cached,) = (tmp_path / "validators").iterdir()
    cached.write_bytes(b"not byte code")
    check = FastCheck(schema)
    assert check.is_valid({"a": 1}) and not check.is_valid({"a": 2})
    assert cached.read_bytes() != b"not byte code"


def test_a_path_that_does_not_exist_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such/dir"]) == 2
    assert "no/such/dir" in capsys.readouterr().err


def test_brackets_in_user_text_are_shown_verbatim_not_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (BROKEN / "gpu-not-allowed.yaml").read_text()
    (tmp_path / "[b]odd[b].yaml").write_text(
        text.replace("Standard_ND96amsr_A100_v5", "'[/red]Standard_X[b]'")
    )
    code = main(["validate", str(ROOT / "manifests" / "platform"), str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "[b]odd[b].yaml" in out and "[/red]Standard_X[b]" in out
    assert main(["validate", "no[/b]"]) == 2
    assert "no[/b]" in capsys.readouterr().err


def test_keywords_newer_than_draft_7_are_enforced(tmp_path: Path) -> None:
    from amlops.core.schemas import FastCheck

    schema = {"type": "object", "dependentRequired": {"a": ["b"]}}
    check = FastCheck(schema)
    assert check.is_valid({"a": 1, "b": 2})
    assert not check.is_valid({"a": 1})
