"""The fake's answers (and the SDK's requests) against Microsoft's REST specs, with oav.

Runs last (see conftest): it validates every request/response pair the session recorded,
after adding a small scenario of its own so that it never validates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.azure.azurite import node_available
from tests.azure.conftest import NO_NODE, AzureEnv
from tests.azure.deadline import within
from tests.azure.oav import describe, recorded_operations, run_oav

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not node_available(), reason=NO_NODE)]


def test_recorded_traffic_matches_the_specs(
    azure_env: AzureEnv, traffic_dir: Path, tmp_path: Path
) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint, Model

    ml = azure_env.ml_client()
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.txt").write_text("w")
    within(60, lambda: ml.models.create_or_update(Model(name="contract", path=str(folder))))
    within(
        60,
        lambda: ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="ep-contract")
        ).result(timeout=30),
    )
    ml.online_endpoints.get_keys("ep-contract")

    recorded = recorded_operations(traffic_dir)
    assert {"ModelVersions_CreateOrUpdate", "OnlineEndpoints_CreateOrUpdate"} <= set(recorded)
    result = run_oav(traffic_dir, tmp_path / "oav")
    print(result.result_line)
    assert result.operations == sum(recorded.values()) > 0
    assert result.covered >= len(recorded) - len(result.violations)
    assert result.violations == [], describe(result)


def test_oav_check_flags_a_wrong_answer_and_an_unknown_operation(tmp_path: Path) -> None:
    """The check can fail: a response of the wrong type and an api-version no spec has."""
    from tests.azure.fake_arm import TrafficRecorder

    traffic = tmp_path / "traffic"
    recorder = TrafficRecorder(traffic)
    ws = (
        "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws"
    )
    for operation_id, path, version, body in (
        ("OnlineEndpoints_ListKeys", "/onlineEndpoints/ep/listKeys", "2022-02-01-preview", 42),
        ("Datastores_List", "/datastores", "2031-01-01", {"value": []}),
    ):
        recorder.record(
            operation_id=operation_id,
            method="POST" if operation_id.endswith("ListKeys") else "GET",
            url=f"https://management.azure.com{ws}{path}?api-version={version}",
            request_headers={},
            request_body=None,
            status=200,
            response_headers={"Content-Type": "application/json"},
            response_body={"primaryKey": body} if isinstance(body, int) else body,
        )
    result = run_oav(traffic, tmp_path / "oav")
    assert result.operations == 2
    codes = sorted(str(v["errorCode"]) for v in result.violations)
    assert "INVALID_TYPE" in codes, describe(result)
    assert any(c in ("NOT_VALIDATED", "UNDEFINED_OPERATION") for c in codes), describe(result)
