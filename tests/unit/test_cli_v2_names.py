"""Plain Azure ML CLI v2 files are checked by Azure ML's own rules: names, VM sizes, workspace
fields, and hints in the file's own field names (issue 10, item 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amlops.cli.apply import desired_objects
from amlops.core.azure import canonical_vm_size, family_of
from amlops.core.findings import Finding
from amlops.core.manifests import DNS_LABEL, kubernetes_name, load_tree
from amlops.core.provenance import Origin
from amlops.core.validate import Report, validate_paths

ROOT = Path(__file__).resolve().parents[2]
CLI_V2 = ROOT / "tests" / "fixtures" / "cli-v2"

SKLEARN_ENV = """\
$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
name: SKLearnEnv
version: "1"
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240701.v1
"""
NEMO_PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
name: nemo_pipeline_job
compute: azureml:gpu-cluster
jobs:
  train:
    type: command
    command: echo hello
    environment: azureml:SKLearnEnv:1
"""
CPU_CLUSTER = """\
$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
name: cpu-cluster
type: amlcompute
size: {size}
max_instances: 4
idle_time_before_scale_down: 1200
tags:
  owner: ml-team@contoso.com
  cost-center: "1234"
"""
FULL_WORKSPACE = """\
$schema: https://azuremlschemas.azureedge.net/latest/workspace.schema.json
name: mlw-full
location: westeurope
resource_group: rg-mlw-full
display_name: every field amlops models
description: a plain az ml workspace file
public_network_access: disabled
system_datastores_auth_mode: identity
managed_network:
  isolation_mode: allow_only_approved_outbound
  outbound_rules:
    - name: pypi
      type: fqdn
      destination: pypi.org
hbi_workspace: true
storage_account: /subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st
tags:
  environment: staging
  owner: ml-team@contoso.com
  cost-center: "1234"
"""


def _repo(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The cli-v2 fixture repository plus ``extra`` files (name -> text)."""
    repo = tmp_path / "repo"
    shutil.copytree(CLI_V2, repo)
    for name, text in extra.items():
        (repo / name).write_text(text)
    return repo


def _at(report: Report, rule: str) -> list[tuple[str, int, str]]:
    return [(Path(f.file).name, f.line, f.field) for f in report.findings if f.rule == rule]


def _errors(report: Report) -> list[str]:
    return [f"{f.file}:{f.line} {f.rule} {f.message}" for f in report.errors]


# -- names -----------------------------------------------------------------------------------


def test_azure_ml_names_that_are_no_dns_labels_validate_clean(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"sklearn-env.yml": SKLEARN_ENV, "nemo.yml": NEMO_PIPELINE})
    report = validate_paths([repo])
    assert _errors(report) == []
    assert {m.name for m in report.manifests} >= {"SKLearnEnv-1", "nemo_pipeline_job"}


def test_apply_names_custom_resources_with_dns_labels(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"sklearn-env.yml": SKLEARN_ENV, "nemo.yml": NEMO_PIPELINE})
    loaded = load_tree([repo])
    objects = desired_objects(loaded.manifests, None, lambda f: Origin(f, None), "test")
    names = {o["kind"]: o["metadata"]["name"] for o in objects}
    assert names["Pipeline"] == kubernetes_name("nemo_pipeline_job")
    assert all(DNS_LABEL.match(o["metadata"]["name"]) for o in objects)
    # the Azure ML name is kept where the reconcilers read it
    pipeline = next(o for o in objects if o["kind"] == "Pipeline")
    assert pipeline["spec"]["job"]["name"] == "nemo_pipeline_job"


def test_kubernetes_names_keep_labels_and_fold_others_apart() -> None:
    assert kubernetes_name("cli-model") == "cli-model"
    folded = kubernetes_name("SKLearnEnv")
    assert folded.startswith("sklearnenv-") and DNS_LABEL.match(folded)
    assert folded != kubernetes_name("sklearnenv") == "sklearnenv"
    long = kubernetes_name("A" * 255)
    assert DNS_LABEL.match(long) and len(long) <= 63
    assert DNS_LABEL.match(kubernetes_name("__"))


MODEL = "name: {name}\nversion: '1'\npath: model\ntype: custom_model\n"
ENVIRONMENT = "name: {name}\nversion: '1'\nimage: mcr.microsoft.com/azureml/a:1\n"
ENDPOINT = (
    "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
    "name: {name}\nauth_mode: key\n"
)
COMPUTE = (
    "name: {name}\ntype: amlcompute\nsize: Standard_DS3_v2\nmax_instances: 1\n"
    "idle_time_before_scale_down: 600\ntags: {{owner: ml-team@contoso.com, cost-center: '1234'}}\n"
)
PIPELINE = (
    "type: pipeline\nname: {name}\njobs:\n  a:\n    type: command\n    command: echo\n"
    "    environment: azureml:cli-env:1\n    compute: azureml:gpu-cluster\n"
)


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        pytest.param(MODEL, "M" * 255, "M" * 256, id="asset-length"),
        pytest.param(MODEL, "9model.v_2-x", "_model", id="asset-first-character"),
        pytest.param(ENVIRONMENT, "SKLearn.Env_2", "sklearn env", id="asset-characters"),
        pytest.param(ENDPOINT, "e" * 32, "e" * 33, id="endpoint-length-max"),
        pytest.param(ENDPOINT, "Ab1", "Ab", id="endpoint-length-min"),
        pytest.param(ENDPOINT, "Blue-Green", "1blue", id="endpoint-first-character"),
        pytest.param(COMPUTE, "c" * 24, "c" * 25, id="compute-length-max"),
        pytest.param(COMPUTE, "Cpu-2", "2cpu", id="compute-first-character"),
        pytest.param(PIPELINE, "nemo_pipeline_job-2", "nemo.pipeline", id="job-characters"),
    ],
)
def test_each_azure_ml_name_rule_has_its_boundary(
    tmp_path: Path, template: str, good: str, bad: str
) -> None:
    accepted = validate_paths([_repo(tmp_path / "good", {"x.yml": template.format(name=good)})])
    assert _errors(accepted) == []
    rejected = validate_paths([_repo(tmp_path / "bad", {"x.yml": template.format(name=bad)})])
    line = template.splitlines().index("name: {name}") + 1
    assert _at(rejected, "azureml.name") == [("x.yml", line, "name")]
    # one finding per mistake: the SDK's own pattern error on that line is not repeated
    assert all(f.rule == "azureml.name" for f in rejected.errors if f.file.endswith("x.yml"))


@pytest.mark.parametrize(
    ("name", "rule"),
    [("mlw_team-1", None), ("mlw.team", "azureml.name"), ("w" * 34, "workspace.name-length")],
)
def test_workspace_names_follow_azure_ml(tmp_path: Path, name: str, rule: str | None) -> None:
    text = (CLI_V2 / "workspace.yml").read_text().replace("name: mlw-cli", f"name: {name}")
    report = validate_paths([_repo(tmp_path, {"workspace.yml": text})], sdk=False)
    found = [(f.rule, f.line) for f in report.errors if f.file.endswith("workspace.yml")]
    assert found == ([] if rule is None else [(rule, 2)])


def test_deployment_names_follow_the_endpoint_rule(tmp_path: Path) -> None:
    text = (CLI_V2 / "deployment.yml").read_text().replace("name: main", "name: m_1")
    report = validate_paths([_repo(tmp_path, {"deployment.yml": text})], sdk=False)
    assert ("deployment.yml", 2, "name") in _at(report, "azureml.name")


# -- VM sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["STANDARD_DS3_v2", "standard_nc24ads_a100_v4"])
def test_vm_sizes_match_in_any_casing(tmp_path: Path, size: str) -> None:
    report = validate_paths([_repo(tmp_path, {"cpu.yml": CPU_CLUSTER.format(size=size)})])
    assert _errors(report) == []


def test_a_size_off_the_allowlist_is_refused_in_any_casing(tmp_path: Path) -> None:
    report = validate_paths(
        [_repo(tmp_path, {"cpu.yml": CPU_CLUSTER.format(size="STANDARD_E4s_v3")})]
    )
    assert _at(report, "compute.gpu-vm-allowlist") == [("cpu.yml", 4, "size")]
    report = validate_paths(
        [_repo(tmp_path / "b", {"cpu.yml": CPU_CLUSTER.format(size="Basic_A1")})]
    )
    assert _at(report, "schema") == [("cpu.yml", 4, "size")]


def test_native_clusters_take_any_casing_too(tmp_path: Path) -> None:
    platform = tmp_path / "platform"
    shutil.copytree(ROOT / "manifests" / "platform", platform)
    compute = platform / "compute.yaml"
    compute.write_text(
        compute.read_text().replace("Standard_NC24ads_A100_v4", "standard_nc24ads_a100_v4")
    )
    assert _errors(validate_paths([platform], sdk=False)) == []


def test_vm_size_tables_fold_case() -> None:
    assert canonical_vm_size("STANDARD_DS3_v2") == "Standard_DS3_v2"
    assert canonical_vm_size("standard_nc4as_t4_v3") == "Standard_NC4as_T4_v3"
    assert canonical_vm_size("Basic_A1") == "Basic_A1"
    assert family_of("standard_nc24ads_a100_v4") is not None


# -- workspace files -------------------------------------------------------------------------


def _workspace(tmp_path: Path, text: str) -> Report:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "workspace.yml").write_text(text)
    return validate_paths([tmp_path / "ws"], sdk=False)


def test_a_plain_workspace_file_is_mapped_completely(tmp_path: Path) -> None:
    report = _workspace(tmp_path, FULL_WORKSPACE)
    (ws,) = report.manifests
    assert ws.spec == {
        "location": "westeurope",
        "resourceGroup": "rg-mlw-full",
        "displayName": "every field amlops models",
        "description": "a plain az ml workspace file",
        "publicNetworkAccess": "Disabled",
        "tags": {"environment": "staging", "owner": "ml-team@contoso.com", "cost-center": "1234"},
        "environment": "staging",
        "managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound"},
        "storage": {"allowSharedKeyAccess": False},
        "existingResourceGroup": True,  # as `az ml workspace create`: the group must exist
    }
    assert _errors(report) == []
    # storage-no-shared-key is satisfied by system_datastores_auth_mode: identity
    assert _at(report, "workspace.storage-no-shared-key") == []
    # what amlops does not model is named, at its line, never dropped silently
    assert _at(report, "load.unmapped-field") == [
        ("workspace.yml", 11, "managed_network.outbound_rules"),
        ("workspace.yml", 15, "hbi_workspace"),
        ("workspace.yml", 16, "storage_account"),
    ]


def test_access_keys_for_system_datastores_are_named_in_the_file_s_words(tmp_path: Path) -> None:
    text = FULL_WORKSPACE.replace("auth_mode: identity", "auth_mode: accesskey")
    (finding,) = [f for f in _workspace(tmp_path, text).findings if "shared-key" in f.rule]
    assert (finding.line, finding.field) == (8, "system_datastores_auth_mode")
    assert "system_datastores_auth_mode to identity" in finding.message


# -- hints in the file's own field names -----------------------------------------------------


def _one(report: Report, rule: str) -> Finding:
    (finding,) = [f for f in report.findings if f.rule == rule]
    return finding


def test_hints_name_the_fields_of_a_plain_file(tmp_path: Path) -> None:
    text = FULL_WORKSPACE.replace('  cost-center: "1234"\n', "")
    finding = _one(_workspace(tmp_path, text), "tags.required")
    assert finding.field == "tags.cost-center"
    assert "spec." not in finding.message and "tags.cost-center" in finding.message
    assert finding.line == 17  # `tags:`, where the missing tag belongs


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        ("resource_group: rg-mlw-full\n", "resource_group"),
        ("  environment: staging\n", "tags.environment"),
    ],
)
def test_missing_workspace_fields_are_named_as_written(
    tmp_path: Path, drop: str, field: str
) -> None:
    finding = _one(_workspace(tmp_path, FULL_WORKSPACE.replace(drop, "")), "schema")
    assert finding.message == f"missing required field {field!r}"


def test_hints_of_our_own_manifests_keep_our_field_names(tmp_path: Path) -> None:
    platform = tmp_path / "platform"
    shutil.copytree(ROOT / "manifests" / "platform", platform)
    compute = platform / "compute.yaml"
    compute.write_text(compute.read_text().replace('    cost-center: "4711"\n', "", 1))
    finding = _one(validate_paths([platform], sdk=False), "tags.required")
    assert finding.field == "spec.tags"
    assert "spec.tags.cost-center" in finding.message


def test_prod_hints_a_plain_file_cannot_follow_say_so(tmp_path: Path) -> None:
    text = FULL_WORKSPACE.replace("environment: staging", "environment: prod").replace(
        "allow_only_approved_outbound", "allow_internet_outbound"
    )
    report = _workspace(tmp_path, text)
    network = _one(report, "workspace.prod-managed-network")
    assert (network.line, network.field) == (10, "managed_network.isolation_mode")
    assert "isolation_mode to allow_only_approved_outbound" in network.message
    assert "cannot set this" in _one(report, "workspace.prod-purge-protection").message
