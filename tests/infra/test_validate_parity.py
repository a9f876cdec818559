"""Whatever stops the Pulumi program, `amlops validate` (the PR check) rejects first, word for word.

Every broken fixture and every variant below is added to a copy of the example platform, then
run both ways: through ``program.load_platform`` (what ``pulumi up`` runs before declaring
anything) and through ``amlops validate``. When the program refuses, the CLI exits 1 with the
same findings (rule, message, file, line, field); when it goes ahead, every CLI error is on a
kind the operator applies, which the program leaves alone on purpose.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlops.cli import main
from amlops.core.manifests import INFRA_KINDS
from infra import offline

offline.install("dev")

from infra import program  # noqa: E402
from infra.specs import ManifestError, format_finding  # noqa: E402
from tests.infra.conftest import ROOT, stack_config  # noqa: E402
from tests.platform_text import manifest  # noqa: E402

BROKEN = ROOT / "tests" / "fixtures" / "broken"
FIXTURES = sorted(BROKEN.glob("*.yaml"))
TAGS = '  tags: {owner: ml-platform@contoso.com, cost-center: "4711"}\n'
GROUP = "6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11"  # the data scientists of manifests/platform


def grant(name: str, role: str, scope: str, principal: str = GROUP) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: amlops.io/v1alpha1
        kind: RoleAssignment
        metadata:
          name: {name}
        spec:
          principal: {{type: Group, objectId: {principal}}}
          role: {role}
          scope: {scope}
        """
    )


def cluster(name: str, workspace: str, *, size: str = "Standard_NC4as_T4_v3", low: int = 0) -> str:
    spec = f"""\
        workspace: {workspace}
        vmSize: {size}
        minInstances: {low}
        maxInstances: 2
        idleTimeBeforeScaleDown: 1800
        """
    return manifest("ComputeCluster", name, spec) + TAGS


@dataclass(frozen=True)
class Variant:
    name: str
    text: str
    rules: tuple[str, ...]  # what both must report


# What the broken fixtures do not already show.
VARIANTS = (
    Variant(
        "vm-size-in-no-family",
        cluster("gpu-typo", "mlw-platform-dev", size="Standard_NC24ads_A100_v5"),
        ("compute.gpu-vm-allowlist",),
    ),
    # A prod problem stops the dev stack too: the repository is one desired state.
    Variant(
        "min-above-max-in-prod",
        cluster("gpu-warm", "mlw-platform-prod", low=3),
        ("compute.min-below-max",),
    ),
    Variant(
        "cluster-in-a-missing-workspace",
        cluster("gpu-lost", "mlw-nowhere"),
        ("ref.workspace",),
    ),
    Variant(
        "scope-names-a-missing-workspace",
        grant("lost", "Reader", "{workspace: mlw-nowhere}"),
        ("ref.scope",),
    ),
    Variant(
        "scope-names-a-cluster-of-another-workspace",
        grant("wrong-cluster", "Reader", "{workspace: mlw-platform-prod, compute: gpu-t4}"),
        ("ref.scope",),
    ),
    Variant(
        "owner-in-any-casing-on-prod",
        grant("broad", "owner", "{workspace: mlw-platform-prod}"),
        ("rbac.prod-no-owner",),
    ),
    Variant(
        "a-real-role-outside-the-table",
        grant("blob-owner", "Storage Blob Data Owner", "{workspace: mlw-platform-dev}"),
        ("rbac.supported-role",),
    ),
    Variant(
        "the-same-grant-on-a-resource-twice",
        grant("acr-1", "AcrPull", "{workspace: mlw-platform-dev, resource: containerRegistry}")
        + "---\n"
        + grant("acr-2", "acrpull", "{workspace: mlw-platform-dev, resource: containerRegistry}"),
        ("rbac.duplicate-grant",),
    ),
)


@pytest.fixture
def platform_copy(tmp_path: Path) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests" / "platform", target / "platform")
    return target


def validate_cli(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["validate", str(directory), "--output", "json"])
    return code, json.loads(capsys.readouterr().out)


def program_findings(directory: Path) -> ManifestError | None:
    try:
        program.load_platform(stack_config("dev", directory), warn=lambda _: None)
    except ManifestError as exc:
        return exc
    return None


def assert_parity(directory: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Checks both directions; returns the rules of what stopped the program."""
    refused = program_findings(directory)
    code, report = validate_cli(directory, capsys)
    errors = report["errors"]
    on_infra = [e for e in errors if e["kind"] is None or e["kind"] in INFRA_KINDS]
    if refused is None:
        assert on_infra == []
        return []
    assert code == 1
    assert [f.to_json() for f in refused.findings] == on_infra
    for finding in refused.findings:
        assert format_finding(finding) in str(refused)  # what `pulumi up` prints
    return [f.rule for f in refused.findings]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_variant_the_program_refuses_fails_validate_the_same_way(
    variant: Variant, platform_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (platform_copy / "variant.yaml").write_text(variant.text, encoding="utf-8")
    assert assert_parity(platform_copy, capsys) == list(variant.rules)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_broken_fixture_fails_the_program_and_validate_alike(
    fixture: Path, platform_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(fixture, platform_copy / fixture.name)
    rules = assert_parity(platform_copy, capsys)
    expected = fixture.read_text(encoding="utf-8").split("rule=", 1)[1].split()[0]
    operator_fixture = rules == []
    # Errors on Model, Pipeline, Endpoint and Environment are left to the operator; every
    # other fixture stops the program with exactly its one finding.
    assert operator_fixture or rules == [expected]


def test_the_program_refuses_every_fixture_on_the_kinds_it_applies(
    platform_copy: Path,
) -> None:
    refused = []
    for fixture in FIXTURES:
        directory = platform_copy.parent / fixture.stem
        shutil.copytree(platform_copy, directory)
        shutil.copy(fixture, directory / fixture.name)
        if program_findings(directory) is not None:
            refused.append(fixture.stem)
    # Pinned so that a fixture silently moving out of the program's reach is noticed.
    assert refused == [
        "cluster-resource-name-clash",
        "dangling-scope",
        "dev-min-instances",
        "duplicate-grant",
        "duplicate-key",
        "duplicate-name",
        "gpu-not-allowed",
        "missing-tags",
        "private-registry-standard",
        "prod-owner",
        "resource-group-twice",
        "role-not-supported",
        "unknown-field",
        "unknown-kind",
        "workspace-name-too-long",
        "wrong-type",
        "yaml-syntax",
    ]
