"""Plaintext secrets in manifests are flagged, and no output ever prints one (issue 8 item 6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from amlops.cli import common, main
from amlops.core.credentials import (
    MASK,
    find_secrets,
    is_secret_name,
    looks_like_secret,
    mask,
    scrub,
    secret_format,
)
from amlops.core.validate import validate_paths

from .conftest import git

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
CONTEXT = [ROOT / "manifests" / d for d in ("platform", "environments", "models")]
RULE = "secrets.plaintext"

# Fakes in each known format, assembled here so that no scanner mistakes this file for a leak.
FORMATS = {
    "openai": "sk-" + "proj-" + "Fixture0not0a0real0key0AbCdEfGh",
    "openai-legacy": "sk-" + "Fixture0not0a0real0key0AbCdEfGhIjKl",
    "aws": "AKIA" + "FIXTURE0NOTAKEY0",
    "github": "ghp" + "_" + "Fixture0not0a0real0token0AbCdEfGhIjKl",
    "github-fine-grained": "github" + "_pat_" + "Fixture0not0a0real0token0",
    "slack": "xox" + "b-" + "0000000000-fixture",
    "azure-storage": "DefaultEndpointsProtocol=https;AccountName=fx;Account" + "Key=Zml4dHVyZQ==;",
    "sas": "https://fx.blob.core.windows.net/c?sv=2022-11-02&s" + "ig=Zml4dHVyZS1zaWduYXR1cmU%3D",
    "pem": "-----BEGIN " + "RSA PRIVATE KEY-----\nZml4dHVyZQ==\n-----END RSA PRIVATE KEY-----\n",
    "jwt": "eyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiJmaXh0dXJlIn0.Zml4dHVyZS1zaWc",
    "url-password": "postgresql://app:" + "Fixture0pw@db.example.com/app",
}
# Where a format has a secret part inside context worth keeping, only that part is masked.
SECRET_PART = {
    "azure-storage": "Zml4dHVyZQ==",
    "sas": "Zml4dHVyZS1zaWduYXR1cmU%3D",
    "url-password": "Fixture0pw",
    "pem": FORMATS["pem"].rstrip("\n"),  # a YAML block scalar's newline is not the key's
}

NOT_SECRETS = [
    "mlw-sk-prod-westeurope-workspace-01",
    "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
    "azureml:slm-runtime:3",
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240709.v1",
    "python prep.py --tickets ${{inputs.tickets}} --password=${{inputs.pw}}",
    "Word-level bigram language model pre-trained on general English text.",
]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables never fold a cell here: a secret split across lines would escape ``in``."""
    monkeypatch.setattr(common, "stdout", Console(highlight=False, width=10_000))


def _leaks(secret: str, out: str) -> bool:
    """Whether ``secret`` is in ``out``, as written or JSON-escaped (multi-line values)."""
    return secret in out or json.dumps(secret)[1:-1] in out


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "db_passwd",
        "OPENAI_API_KEY",
        "openaiApiKey",
        "apikey",
        "AWS_SECRET_ACCESS_KEY",
        "storageAccessKey",
        "PRIVATE_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "ConnectionString",
        "AccountKey",
        "clientSecret",
        "credentials",
        "HF_TOKEN",
        "hftoken",
        "sas",
        "SAS_TOKEN",
    ],
)
def test_credential_names_are_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "tokenizer",
        "TOKENIZERS_PARALLELISM",
        "SECRET_NAME",
        "secretKeyRef",
        "KEY_VAULT_SECRET_URI",
        "token_limit",
        "AWS_ACCESS_KEY_ID",
        "primary_key",
        "kansas",
        "description",
        "LOG_LEVEL",
    ],
)
def test_names_about_secrets_or_merely_similar_are_not(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize("name", FORMATS)
def test_each_known_format_is_recognised_and_scrubbed_whole(name: str) -> None:
    value = FORMATS[name]
    assert looks_like_secret(value)
    assert secret_format(value) is not None
    scrubbed = scrub(f"before {value} after")
    secret = SECRET_PART.get(name, value)
    assert scrubbed == f"before {value.replace(secret, MASK)} after"
    # nothing of the secret is left: not even a run of 6 of its characters
    assert not any(secret[i : i + 6] in scrubbed for i in range(len(secret) - 5))


@pytest.mark.parametrize("value", NOT_SECRETS)
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert not looks_like_secret(value)
    assert scrub(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "${{azureml://connections/aoai/credentials/key}}",
        "keyvaultref:https://kv.vault.azure.net/secrets/db-password",
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/db-password)",
        "${DB_PASSWORD}",
        "",
        "   ",
        None,
        True,
    ],
)
def test_references_and_empty_values_are_never_flagged(value: Any) -> None:
    body = {"spec": {"environment_variables": {"DB_PASSWORD": value}}}
    assert list(find_secrets(body)) == []
    assert mask(body) == body


def test_name_value_pairs_and_whole_mappings_under_a_secret_name() -> None:
    body = {
        "env": [{"name": "GH_TOKEN", "value": "fixture-1"}, {"name": "MODE", "value": "fast"}],
        "credentials": {"user": "fixture-2", "port": 5432, "enabled": True},
    }
    hits = {hit.path: hit.reason for hit in find_secrets(body)}
    assert set(hits) == {
        ("env", 0, "value"),
        ("credentials", "user"),
        ("credentials", "port"),
    }
    assert not any("fixture" in reason for reason in hits.values())
    masked = mask(body)
    assert masked["env"] == [{"name": "GH_TOKEN", "value": MASK}, {"name": "MODE", "value": "fast"}]
    assert masked["credentials"] == {"user": MASK, "port": MASK, "enabled": True}


def _secrets_in(fixture: Path) -> list[str]:
    """Every value in the fixture that the rule must keep out of outputs: the ones under a
    secret name and the ones in a known format (references and ordinary values excluded)."""
    data = yaml.safe_load(fixture.read_text())
    return sorted({str(hit.value) for hit in find_secrets(data)})


# (fixture, [(field, line)]) the rule must report, in order
EXPECTED = {
    "secrets-endpoint.yaml": [
        ("spec.deployments[0].environment_variables.DB_PASSWORD", 21),
        ("spec.deployments[0].environment_variables.OPENAI_API_KEY", 22),
        ("spec.deployments[0].environment_variables.BLOB_STORE", 23),
    ],
    "secrets-pipeline.yaml": [
        ("spec.job.tags.mirror", 14),
        ("spec.job.jobs.prep.environment_variables.WANDB_API_KEY", 21),
    ],
}


@pytest.mark.parametrize("name", EXPECTED)
def test_rule_names_field_and_line_and_never_the_value(name: str) -> None:
    fixture = HOSTILE / name
    report = validate_paths([*CONTEXT, fixture])
    assert [(f.rule, Path(f.file).name) for f in report.errors] == [(RULE, name)] * len(
        EXPECTED[name]
    )
    assert [(f.field, f.line) for f in report.errors] == EXPECTED[name]
    secrets = _secrets_in(fixture)
    assert len(secrets) == len(EXPECTED[name])
    for finding in report.findings:
        assert not any(_leaks(s, finding.message) for s in secrets)


def test_the_fixtures_hold_references_and_ordinary_values_that_are_not_reported() -> None:
    fixture = HOSTILE / "secrets-endpoint.yaml"
    env = yaml.safe_load(fixture.read_text())["spec"]["deployments"][0]["environment_variables"]
    reported = {field.rsplit(".", 1)[1] for field, _ in EXPECTED[fixture.name]}
    assert {"AOAI_API_KEY", "HF_TOKEN", "EMPTY_SECRET", "LOG_LEVEL", "MAX_TOKENS"} <= (
        env.keys() - reported
    )


@pytest.mark.parametrize("output", ["text", "json", "sarif", "github"])
@pytest.mark.parametrize("name", [*EXPECTED, "secrets-schema-echo.yaml"])
def test_validate_never_prints_a_secret(
    name: str, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = HOSTILE / name
    secrets = _secrets_in(fixture)
    assert secrets
    code = main(["validate", *map(str, CONTEXT), str(fixture), "--output", output])
    out = capsys.readouterr().out
    assert code == 1
    assert fixture.name in out
    for secret in secrets:
        assert not _leaks(secret, out)


def test_a_schema_error_about_a_secret_names_the_field_without_the_value() -> None:
    fixture = HOSTILE / "secrets-schema-echo.yaml"
    # what every driver prints (validate, plan, up, the operator): the core masks secrets
    (error,) = validate_paths([*CONTEXT, fixture]).findings
    assert (error.rule, error.field, error.line) == (
        "schema",
        "metadata.annotations.registry-password",
        8,
    )
    assert error.message == f"{MASK} is not of type 'string'"


def test_the_example_platform_has_no_plaintext_secret() -> None:
    report = validate_paths([ROOT / "manifests"], sdk=False)
    assert [f for f in report.findings if f.rule == RULE] == []


# -- plan ---------------------------------------------------------------------------------------


def _set_env(repo: Path, variables: dict[str, str]) -> None:
    path = repo / "manifests" / "endpoints" / "support-online.yaml"
    data = yaml.safe_load(path.read_text())
    data["spec"]["deployments"][0]["environment_variables"] = variables
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("output", ["text", "json", "markdown"])
def test_plan_shows_that_a_secret_changed_but_never_its_value(
    repo: Path, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"DB_PASSWORD": "old-fixture-pw", "OPENAI_API_KEY": FORMATS["openai"]}
    new = {
        "DB_PASSWORD": "new-fixture-pw",
        "OPENAI_API_KEY": FORMATS["openai"],
        "NOTES": f"rotated, see {FORMATS['github']}",
        "LOG_LEVEL": "debug",
    }
    _set_env(repo, old)
    git(repo, "commit", "-qam", "old secrets")
    _set_env(repo, new)
    git(repo, "commit", "-qam", "new secrets")
    code = main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD", "-o", output])
    out = capsys.readouterr().out
    assert code == 1  # the head holds plaintext secrets: secrets.plaintext blocks it
    for secret in ("old-fixture-pw", "new-fixture-pw", FORMATS["openai"], FORMATS["github"]):
        assert not _leaks(secret, out)
    assert "DB_PASSWORD" in out and "debug" in out and RULE in out
    if output == "json":
        data = json.loads(out)
        (change,) = data["changes"]
        fields = {f["path"].rsplit(".", 1)[1]: f for f in change["fields"]}
        assert fields["DB_PASSWORD"] == {
            "path": "spec.deployments[blue].environment_variables.DB_PASSWORD",
            "action": "change",
            "before": MASK,
            "after": MASK,
            "masked": True,
        }
        assert fields["NOTES"]["after"] == f"rotated, see {MASK}"
        assert fields["LOG_LEVEL"] == {
            "path": "spec.deployments[blue].environment_variables.LOG_LEVEL",
            "action": "add",
            "after": "debug",
        }
        assert "OPENAI_API_KEY" not in fields  # unchanged
    else:
        assert f"environment_variables.DB_PASSWORD: {MASK} (changed)" in out


def test_plan_of_a_new_object_masks_its_secrets(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(HOSTILE / "secrets-endpoint.yaml", repo / "manifests" / "endpoints")
    secrets = _secrets_in(HOSTILE / "secrets-endpoint.yaml")
    for output in ("text", "json", "markdown"):
        assert main(["plan", "manifests", "--base", "HEAD", "-o", output]) == 1
        out = capsys.readouterr().out
        assert "secrets-online" in out
        for secret in secrets:
            assert not _leaks(secret, out)
