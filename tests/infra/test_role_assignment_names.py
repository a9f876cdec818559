"""Role assignments are named by UUID5 of scope, principal and role: stable, never duplicated."""

from __future__ import annotations

import uuid

import pytest

from infra import offline

offline.install("dev")

from infra import naming, program  # noqa: E402
from infra.offline import run_offline  # noqa: E402
from tests.infra.conftest import stack_config  # noqa: E402


def assignment_names() -> dict[str, str]:
    config = stack_config("dev")
    run = run_offline(program.load_platform(config, warn=pytest.fail), config)
    return {
        r.name: r.inputs["roleAssignmentName"]
        for r in run.resources
        if r.type == "azure-native:authorization:RoleAssignment"
    }


def test_names_are_identical_across_runs() -> None:
    first, second = assignment_names(), assignment_names()
    assert len(first) == 4
    assert first == second
    assert len(set(first.values())) == 4  # four grants, four names


def test_name_is_uuid5_of_scope_principal_and_role() -> None:
    names = assignment_names()
    scope = (
        f"/subscriptions/{offline.MOCK_SUBSCRIPTION_ID}/resourceGroups/rg-mlplatform-dev/"
        "providers/Microsoft.MachineLearningServices/workspaces/mlw-platform-dev"
    )
    expected = uuid.uuid5(
        naming.ASSIGNMENT_NAMESPACE,
        f"{scope.lower()}|6f1c2a3e-8d4b-4c1e-9a7f-2b5d8e9c0a11|f6c7c914-8db3-469d-8ca1-694a8f32e121",
    )
    assert names["mlw-platform-dev-access-data-scientists-dev"] == str(expected)
    assert uuid.UUID(names["mlw-platform-dev-access-data-scientists-dev"]).version == 5


def test_name_changes_with_each_part_and_ignores_case() -> None:
    base = naming.assignment_name("/subscriptions/s/rg/ws", "principal", "role")
    assert naming.assignment_name("/SUBSCRIPTIONS/S/RG/WS/", "PRINCIPAL", "ROLE") == base
    assert naming.assignment_name("/subscriptions/s/rg/other", "principal", "role") != base
    assert naming.assignment_name("/subscriptions/s/rg/ws", "someone-else", "role") != base
    assert naming.assignment_name("/subscriptions/s/rg/ws", "principal", "other-role") != base
