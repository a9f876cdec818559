"""Loading: source positions, multi-document files, plain Azure ML CLI v2 files, relative paths."""

from __future__ import annotations

from pathlib import Path

from amlops.core.manifests import ORIGIN_CLI, load_tree
from amlops.core.source import load_documents
from amlops.core.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
CLI_V2 = ROOT / "tests" / "fixtures" / "cli-v2"


def test_every_value_keeps_its_line_and_column() -> None:
    text = "a:\n  b:\n    - x\n    - {c: 1}\n  d: 2\n"
    (doc,) = load_documents("f.yaml", text)
    assert doc.data == {"a": {"b": ["x", {"c": 1}], "d": 2}}
    assert (doc.locate(("a", "b", 1, "c")).line, doc.locate(("a", "b", 1, "c")).column) == (4, 11)
    assert doc.locate(("a", "d")).line == 5
    # a missing field points at its deepest existing parent
    assert doc.locate(("a", "d", "nope")).line == 5
    assert doc.locate(("a", "b")).line == 2  # block values point at their key


def test_multi_document_files_give_one_manifest_each() -> None:
    result = load_tree([ROOT / "manifests" / "platform" / "compute.yaml"])
    assert [m.name for m in result.manifests] == ["gpu-a100", "gpu-t4", "gpu-a100"]
    assert [m.workspace for m in result.manifests] == [
        "mlw-platform-dev",
        "mlw-platform-dev",
        "mlw-platform-prod",
    ]
    assert result.manifests[1].locate(("spec", "vmSize")).line == 23


def test_plain_cli_v2_files_are_wrapped_into_our_kinds() -> None:
    result = load_tree([CLI_V2])
    by_kind = {m.kind: m for m in result.manifests}
    assert set(by_kind) == {"Workspace", "ComputeCluster", "Model", "Environment", "Endpoint"}
    assert all(m.origin == ORIGIN_CLI for m in result.manifests)
    ws = by_kind["Workspace"]
    assert ws.spec["managedNetwork"] == {"isolationMode": "AllowInternetOutbound"}
    assert ws.spec["environment"] == "dev"
    compute = by_kind["ComputeCluster"]
    assert compute.spec["vmSize"] == "Standard_NC4as_T4_v3"
    assert compute.spec["tier"] == "LowPriority"
    assert compute.workspace == "mlw-cli"  # the only workspace is the default
    # positions map back to the original CLI file and key
    pos = compute.locate(("spec", "maxInstances"))
    assert (Path(pos.file).name, pos.line) == ("compute.yml", 6)
    endpoint = by_kind["Endpoint"]
    assert [d["name"] for d in endpoint.spec["deployments"]] == ["main"]
    pos = endpoint.locate(("spec", "deployments", 0, "model"))
    assert (Path(pos.file).name, pos.line) == ("deployment.yml", 4)


def test_relative_paths_resolve_against_the_file_that_names_them() -> None:
    result = load_tree([CLI_V2])
    endpoint = next(m for m in result.manifests if m.kind == "Endpoint")
    path = ("spec", "deployments", 0, "code_configuration", "code")
    assert endpoint.resolve_path(path, "score") == (CLI_V2 / "score").resolve()
    model = next(m for m in result.manifests if m.kind == "Model")
    assert model.resolve_path(("spec", "model", "path"), "model").is_dir()


def test_a_repository_of_plain_cli_v2_yaml_validates_unchanged() -> None:
    report = validate_paths([CLI_V2])
    assert report.errors == [], [f.message for f in report.errors]
    assert report.kinds()["Endpoint"] == 1


def test_deployment_for_an_undeclared_endpoint_is_an_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "d.yml").write_text(
        (CLI_V2 / "deployment.yml").read_text().replace("cli-endpoint", "nowhere")
    )
    (tmp_path / "w.yml").write_text((CLI_V2 / "workspace.yml").read_text())
    report = validate_paths([tmp_path])
    assert [(f.rule, f.line) for f in report.errors] == [("ref.endpoint", 3)]


def test_files_that_are_not_manifests_are_skipped_not_errors() -> None:
    result = load_tree([ROOT / "manifests"])
    assert any(name.endswith("slm-runtime.conda.yaml") for name in result.skipped)
    assert result.findings == []


def test_validation_reports_every_finding_in_one_run(tmp_path: Path) -> None:
    broken = ROOT / "tests" / "fixtures" / "broken"
    for name in ("wrong-type.yaml", "yaml-syntax.yaml", "unknown-kind.yaml"):
        (tmp_path / name).write_text((broken / name).read_text())
    report = validate_paths([tmp_path])
    assert sorted(f.rule for f in report.errors) == [
        "load.unknown-kind",
        "load.yaml-syntax",
        "schema",
    ]


def test_recursive_anchors_are_a_finding_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text("apiVersion: amlops.io/v1alpha1\na: &a [1, *a]\n")
    (tmp_path / "merge.yaml").write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    report = validate_paths([tmp_path])
    assert [(f.rule, Path(f.file).name, f.line) for f in report.errors] == [
        ("load.yaml-syntax", "loop.yaml", 2)
    ]
    assert "recursive anchor" in report.errors[0].message


def test_plain_cli_v2_types_amlops_does_not_manage_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "data.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\n"
        "name: tickets\nversion: 1\npath: ./x\ntype: uri_folder\n"
    )
    report = validate_paths([tmp_path])
    assert report.ok
    assert [w.rule for w in report.warnings] == ["load.unsupported-cli-type"]
