"""Policy findings of severity error stop the program before a single resource is declared."""

from __future__ import annotations

import json
import runpy
import shutil
from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest

from amlops.core.validate import validate_paths
from infra import offline

offline.install("dev")

from infra import program  # noqa: E402
from infra.offline import RecordingMonitor, pulumi_test  # noqa: E402
from infra.specs import ManifestError, format_finding  # noqa: E402
from tests.infra.conftest import ISSUER, ROOT, stack_config  # noqa: E402


@pytest.fixture
def platform_copy(tmp_path: Path) -> Path:
    """A copy of the example platform to break."""
    target = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests" / "platform", target / "platform")
    return target


def break_dev_cluster(directory: Path) -> None:
    compute = directory / "platform" / "compute.yaml"
    text = compute.read_text(encoding="utf-8")
    # compute.dev-max-instances: a dev cluster may hold at most 4 nodes.
    compute.write_text(text.replace("maxInstances: 4\n", "maxInstances: 16\n", 1), encoding="utf-8")


@pytest.fixture
def engine_config(platform_copy: Path) -> Iterator[Path]:
    """Stack config as `pulumi up` hands it to the program (JSON strings for objects)."""
    pulumi.runtime.set_all_config(
        {
            "amlops:environment": "dev",
            "amlops:manifests": str(platform_copy),
            "amlops:commit": "feedface",
            "amlops:tags": json.dumps({"platform": "ml"}),
            "amlops:operatorIdentity": json.dumps({"oidcIssuer": ISSUER}),
        }
    )
    yield platform_copy
    pulumi.runtime.set_all_config({})


def run_main() -> None:
    """Run infra/ the way Pulumi does (`main: infra/`), under the mocks."""

    def main() -> None:  # returns None: run_path's globals are no Output to wait for
        runpy.run_path(str(ROOT / "infra"), run_name="__main__")

    pulumi_test(main)()


def test_a_policy_error_stops_pulumi_up_before_any_resource(
    engine_config: Path, monitor: RecordingMonitor
) -> None:
    break_dev_cluster(engine_config)
    with pytest.raises(ManifestError) as info:
        run_main()
    assert monitor.declared() == []  # nothing half-declared
    (finding,) = info.value.findings
    assert finding.rule == "compute.dev-max-instances"
    assert (Path(finding.file).name, finding.line, finding.field) == (
        "compute.yaml",
        26,
        "spec.maxInstances",
    )
    # The same finding, word for word, that `amlops validate` reports for the same files.
    cli = [f for f in validate_paths([engine_config]).errors]
    assert [f.message for f in cli] == [finding.message]
    assert format_finding(cli[0]) in str(info.value)
    assert isinstance(info.value, pulumi.RunError)  # printed by Pulumi without a traceback


def test_the_clean_platform_runs_end_to_end_and_exports(
    engine_config: Path, monitor: RecordingMonitor
) -> None:
    root = pulumi.runtime.get_root_resource()
    assert isinstance(root, pulumi.runtime.stack.Stack)
    root.outputs.clear()
    run_main()
    assert len(monitor.declared()) == 20
    assert set(root.outputs) == {
        "workspaceNames",
        "workspaceIds",
        "mlflowTrackingUris",
        "computeIds",
        "operatorIdentityClientId",
    }
    tags = next(r for r in monitor.declared() if r.name == "mlw-platform-dev-mlw").inputs["tags"]
    assert tags["amlops-commit"] == "feedface"


def test_yaml_syntax_errors_stop_the_program(platform_copy: Path) -> None:
    (platform_copy / "platform" / "broken.yaml").write_text("kind: [Workspace\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        program.load_platform(stack_config("dev", platform_copy), warn=pytest.fail)
    assert [f.rule for f in info.value.findings] == ["load.yaml-syntax"]


def test_errors_on_operator_kinds_only_warn(platform_copy: Path) -> None:
    (platform_copy / "model.yaml").write_text(
        "apiVersion: amlops.io/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {workspace: mlw-platform-dev, model: {name: m, path: ./nowhere}, bogus: 1}\n",
        encoding="utf-8",
    )
    warnings: list[str] = []
    platform = program.load_platform(stack_config("dev", platform_copy), warn=warnings.append)
    assert [w.name for w in platform.workspaces] == ["mlw-platform-dev"]
    assert len(warnings) == 1
    assert "left to the operator" in warnings[0]


def test_a_stack_without_workspaces_refuses_to_run(platform_copy: Path) -> None:
    # An empty program would make `pulumi up` delete everything the stack created before.
    with pytest.raises(ManifestError) as info:
        program.load_platform(stack_config("staging", platform_copy), warn=pytest.fail)
    assert [f.rule for f in info.value.findings] == ["infra.no-workspaces"]
