"""The deploy-time policy pack's validators, called directly on declared resource arguments."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from amlops.core.validate import validate_paths
from infra import offline

offline.install("dev")

from infra import policypack, program  # noqa: E402
from infra.offline import DeclaredResource, OfflineRun, run_offline  # noqa: E402
from infra.specs import seconds_to_iso8601  # noqa: E402
from tests.infra.conftest import ROOT, stack_config  # noqa: E402

OWNER = (
    "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/"
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
)


def run(environment: str) -> OfflineRun:
    config = stack_config(environment)
    return run_offline(program.load_platform(config, warn=pytest.fail), config)


@pytest.fixture(scope="module")
def dev() -> list[DeclaredResource]:
    return run("dev").resources


@pytest.fixture(scope="module")
def prod() -> list[DeclaredResource]:
    return run("prod").resources


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def as_policy_resources(
    resources: list[DeclaredResource], change: Callable[[str, dict[str, Any]], None] | None = None
) -> list[PolicyResource]:
    """The declared resources as the policy engine sees them, optionally edited first."""
    out = []
    for r in resources:
        if not r.custom:
            continue
        props = copy.deepcopy(r.inputs)
        if change:
            change(r.name, props)
        out.append(PolicyResource(r.type, props, r.urn, r.name, _options(), None, None, [], {}))
    return out


def stack_violations(resources: list[PolicyResource], warnings: bool = False) -> list[str]:
    found: list[str] = []
    validate = (
        policypack.validate_manifest_warnings if warnings else policypack.validate_manifest_errors
    )
    validate(StackValidationArgs(resources), lambda message, urn: found.append(message))
    return found


def invariant_violations(resources: list[PolicyResource]) -> list[str]:
    found: list[str] = []
    for r in resources:
        args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, None)
        for validate in (
            policypack.validate_storage,
            policypack.validate_key_vault,
            policypack.validate_registry,
            policypack.validate_compute,
            policypack.validate_tags,
        ):
            validate(args, lambda message, urn: found.append(message))
    return found


def test_the_example_platform_passes_every_policy(
    dev: list[DeclaredResource], prod: list[DeclaredResource]
) -> None:
    for resources in (as_policy_resources(dev), as_policy_resources(prod)):
        assert stack_violations(resources) == []
        assert stack_violations(resources, warnings=True) == []
        assert invariant_violations(resources) == []


def test_a_public_prod_workspace_fails_with_the_cli_message(
    prod: list[DeclaredResource], tmp_path: Path
) -> None:
    def make_public(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-prod-mlw":
            props["publicNetworkAccess"] = "Enabled"

    (violation,) = stack_violations(as_policy_resources(prod, make_public))
    # The same change made in the manifest: `amlops validate` says the very same thing.
    shutil.copytree(ROOT / "manifests" / "platform", tmp_path / "platform")
    workspaces = tmp_path / "platform" / "workspaces.yaml"
    text = workspaces.read_text(encoding="utf-8")
    workspaces.write_text(
        text.replace("publicNetworkAccess: Disabled", "publicNetworkAccess: Enabled"),
        encoding="utf-8",
    )
    (cli,) = validate_paths([tmp_path], sdk=False).errors
    assert violation == (f"[{cli.rule}] Workspace/mlw-platform-prod {cli.field}: {cli.message}")
    assert cli.rule == "workspace.prod-private"


def test_prod_vault_without_purge_protection(prod: list[DeclaredResource]) -> None:
    def drop(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-prod-kv":
            del props["properties"]["enablePurgeProtection"]

    (violation,) = stack_violations(as_policy_resources(prod, drop))
    assert violation.startswith("[workspace.prod-purge-protection] Workspace/mlw-platform-prod")


def test_dev_cluster_rules_read_back_from_scale_settings(dev: list[DeclaredResource]) -> None:
    def grow(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-dev-gpu-t4-compute":
            aml = props["properties"]["properties"]
            aml["scaleSettings"]["maxNodeCount"] = 16
            aml["scaleSettings"]["minNodeCount"] = 1
            aml["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] = "PT1H"
            aml["vmSize"] = "Standard_ND96isr_H200_v5"

    rules = sorted(v.split("]")[0][1:] for v in stack_violations(as_policy_resources(dev, grow)))
    assert rules == [
        "compute.dev-idle-scale-down",
        "compute.dev-max-instances",
        "compute.dev-scale-to-zero",
        "compute.gpu-vm-allowlist",
    ]


def test_owner_on_prod_is_refused_once_by_the_prod_rule(prod: list[DeclaredResource]) -> None:
    def escalate(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-prod-access-data-scientists-prod-reader":
            props["roleDefinitionId"] = OWNER

    resources = as_policy_resources(prod, escalate)
    (violation,) = stack_violations(resources)
    assert violation.startswith("[rbac.prod-no-owner] RoleAssignment/")
    assert "'Owner' is not allowed" in violation
    assert invariant_violations(resources) == []


def test_roles_outside_the_table_are_refused_in_every_environment(
    dev: list[DeclaredResource],
) -> None:
    custom = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/0000-custom"

    def escalate(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-dev-access-data-scientists-dev":
            props["roleDefinitionId"] = OWNER
        elif name == "mlw-platform-dev-access-data-scientists-dev-a100":
            props["roleDefinitionId"] = custom

    violations = stack_violations(as_policy_resources(dev, escalate))
    assert [v.split("]")[0] for v in violations] == ["[rbac.supported-role"] * 2
    assert "'Owner' is not one of them (AzureML Data Scientist, " in violations[0]
    assert f"{custom!r} is not one of them" in violations[1]


def test_grants_read_back_with_their_scope_below_the_workspace(
    dev: list[DeclaredResource],
) -> None:
    def same_role(name: str, props: dict[str, Any]) -> None:
        # The same group and role on the workspace and on one of its clusters: two grants.
        if name == "mlw-platform-dev-access-data-scientists-dev-a100":
            props["roleDefinitionId"] = props["roleDefinitionId"].replace(
                "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815", "f6c7c914-8db3-469d-8ca1-694a8f32e121"
            )

    assert stack_violations(as_policy_resources(dev, same_role)) == []

    def same_scope(name: str, props: dict[str, Any]) -> None:
        same_role(name, props)
        if name == "mlw-platform-dev-access-data-scientists-dev-a100":
            props["description"] = props["description"].replace(", compute=gpu-a100", "")

    (violation,) = stack_violations(as_policy_resources(dev, same_scope))
    assert violation.startswith(
        "[rbac.duplicate-grant] RoleAssignment/mlw-platform-dev-access-data-scientists-dev-a100"
    )


def test_nothing_next_to_a_private_workspace_is_public(prod: list[DeclaredResource]) -> None:
    def open_up(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-prod-appi":
            props["publicNetworkAccessForIngestion"] = "Enabled"
            del props["publicNetworkAccessForQuery"]  # Azure's default: Enabled
        elif name == "mlw-platform-prod-kv":
            props["properties"]["publicNetworkAccess"] = "Enabled"

    found: list[str] = []
    policypack.validate_private_network(
        StackValidationArgs(as_policy_resources(prod, open_up)),
        lambda message, urn: found.append(message),
    )
    suffix = "but workspace mlw-platform-prod has no public network access; it must be Disabled"
    assert sorted(found) == [
        f"mlw-platform-prod-appi: publicNetworkAccessForIngestion is 'Enabled', {suffix}",
        f"mlw-platform-prod-appi: publicNetworkAccessForQuery is 'Enabled', {suffix}",
        f"mlw-platform-prod-kv: properties.publicNetworkAccess is 'Enabled', {suffix}",
    ]


def test_a_public_workspace_may_have_public_neighbours(dev: list[DeclaredResource]) -> None:
    found: list[str] = []
    policypack.validate_private_network(
        StackValidationArgs(as_policy_resources(dev)), lambda message, urn: found.append(message)
    )
    assert found == []


def test_shared_keys_are_a_warning_not_an_error(dev: list[DeclaredResource]) -> None:
    def share(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-dev-st":
            props["allowSharedKeyAccess"] = True

    resources = as_policy_resources(dev, share)
    assert stack_violations(resources) == []
    (warning,) = stack_violations(resources, warnings=True)
    assert warning.startswith("[workspace.storage-no-shared-key]")


def test_program_invariants(dev: list[DeclaredResource]) -> None:
    def weaken(name: str, props: dict[str, Any]) -> None:
        if name == "mlw-platform-dev-st":
            props["minimumTlsVersion"] = "TLS1_0"
            props["allowBlobPublicAccess"] = True
        elif name == "mlw-platform-dev-kv":
            props["properties"]["enableRbacAuthorization"] = False
        elif name == "mlw-platform-dev-cr":
            props["adminUserEnabled"] = True
        elif name == "mlw-platform-dev-gpu-a100-compute":
            props["properties"]["properties"]["remoteLoginPortPublicAccess"] = "Enabled"
        elif name == "mlw-platform-dev-gpu-t4-compute":
            # What a plain dict in the union-typed property sends: snake_case keys.
            props["properties"] = {"compute_type": "AmlCompute", "properties": {"vm_size": "x"}}
        elif name == "mlw-platform-dev-log":
            del props["tags"]["amlops-commit"]

    found = invariant_violations(as_policy_resources(dev, weaken))
    assert sorted(found) == sorted(
        [
            "storage account mlw-platform-dev-st: minimumTlsVersion must be TLS1_2",
            "storage account mlw-platform-dev-st: allowBlobPublicAccess must be false",
            "key vault mlw-platform-dev-kv: enableRbacAuthorization must be true "
            "(no access policies)",
            "container registry mlw-platform-dev-cr: adminUserEnabled must be false",
            "compute mlw-platform-dev-gpu-a100-compute: remoteLoginPortPublicAccess must be "
            "Disabled (no SSH)",
            "compute mlw-platform-dev-gpu-t4-compute: properties.properties.vmSize is missing",
            "mlw-platform-dev-log: missing tags amlops-commit (provenance of the change)",
        ]
    )


@pytest.mark.parametrize("seconds", [0, 59, 60, 900, 1800, 3600, 5025, 86399])
def test_idle_time_round_trips(seconds: int) -> None:
    assert policypack.iso8601_to_seconds(seconds_to_iso8601(seconds)) == seconds


def test_the_pack_declares_uniquely_named_policies() -> None:
    names = [p.name for p in policypack.policies()]
    assert len(names) == len(set(names)) == 4
    assert (ROOT / "policies" / "pulumi-policy-pack" / "PulumiPolicy.yaml").is_file()


def test_unknown_values_in_a_preview_skip_one_resource_not_the_stack(
    dev: list[DeclaredResource],
) -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    def first_preview(name: str, props: dict[str, Any]) -> None:
        if name.endswith("-compute"):
            props["workspaceName"] = UNKNOWN_STRING_VALUE  # the workspace is not created yet
            props["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = 16
        if name == "mlw-platform-dev-access-data-scientists-dev":
            props["roleDefinitionId"] = UNKNOWN_STRING_VALUE

    resources = as_policy_resources(dev, first_preview)
    for r in resources:  # what the policy engine hands validators during a preview
        r.props = unknown_checking_proxy(dict(r.props))
    violations = stack_violations(resources)
    # The clusters are still checked (their workspace comes from a tag); the grant whose
    # role is unknown is skipped instead of aborting the whole stack check.
    assert [v.split("]")[0] for v in violations] == ["[compute.dev-max-instances"] * 2
