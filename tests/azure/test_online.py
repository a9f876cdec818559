"""Online endpoints and deployments through the real SDK, on the fake's controlled clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.azure.conftest import AzureEnv
from tests.azure.deadline import within

pytestmark = pytest.mark.slow

IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"


def _deployment(tmp_path: Path, name: str, endpoint: str, model: str) -> Any:
    from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment

    code = tmp_path / f"code-{name}"
    code.mkdir()
    (code / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    conda = tmp_path / f"conda-{name}.yml"
    conda.write_text("name: serve\ndependencies:\n  - python=3.10\n")
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        environment=Environment(image=IMAGE, conda_file=str(conda)),
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        instance_type="Standard_DS3_v2",
        instance_count=1,
    )


def _register_model(ml: Any, tmp_path: Path) -> str:
    from azure.ai.ml.entities import Model

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.txt").write_text("weights")
    model = within(60, lambda: ml.models.create_or_update(Model(name="served", path=str(folder))))
    return f"azureml:served:{model.version}"


def _wait_until(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_endpoint_and_deployment_lifecycle(azure_env: AzureEnv, tmp_path: Path) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    fake = azure_env.fake
    ml = azure_env.ml_client()
    model = _register_model(ml, tmp_path)

    endpoint = within(
        60,
        lambda: ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="ep-main", auth_mode="key")
        ).result(timeout=30),
    )
    assert endpoint.provisioning_state == "Succeeded"
    assert endpoint.scoring_uri.endswith("/score")
    create = fake.log.find("OnlineEndpoints_CreateOrUpdate")
    assert [r.status for r in create] == [201] and create[0].api_version == "2022-02-01-preview"
    assert fake.log.count("(AsyncOperationStatus)") >= 1

    fake.log.reset()
    poller = within(
        90,
        lambda: ml.online_deployments.begin_create_or_update(
            _deployment(tmp_path, "blue", "ep-main", model)
        ),
    )
    # Code upload and the anonymous environment happen before the PUT returns a poller.
    ops = fake.log.operation_ids()
    assert ops.index("CodeVersions_CreateOrUpdate") < ops.index("OnlineDeployments_CreateOrUpdate")
    assert ops.index("EnvironmentVersions_CreateOrUpdate") < ops.index(
        "OnlineDeployments_CreateOrUpdate"
    )
    assert (
        fake.state.provisioning_state(
            fake.state.resource_id(
                azure_env.workspace, "onlineEndpoints", "ep-main", "deployments", "blue"
            )
        )
        == "Creating"
    )
    # The clock has not moved: the SDK keeps polling and the deployment stays Creating.
    _wait_until(lambda: fake.log.count("(AsyncOperationStatus)") >= 2, 10)
    assert not poller.done()
    fake.clock.advance(fake.durations["onlineDeployments"])
    deployment = poller.result(timeout=30)
    assert deployment.provisioning_state == "Succeeded"
    assert deployment.instance_type == "Standard_DS3_v2"
    logs = ml.online_deployments.get_logs("blue", "ep-main", lines=5)
    assert "succeeded" in logs

    keys = ml.online_endpoints.get_keys("ep-main")
    assert keys.primary_key and keys.secondary_key and keys.primary_key != keys.secondary_key
    within(
        30,
        lambda: ml.online_endpoints.begin_regenerate_keys("ep-main", key_type="secondary").result(
            timeout=20
        ),
    )
    assert ml.online_endpoints.get_keys("ep-main").secondary_key != keys.secondary_key

    # A second deployment with the same code: the hash look-up finds it, nothing is uploaded.
    fake.log.reset()
    green = within(
        90,
        lambda: ml.online_deployments.begin_create_or_update(
            _deployment(tmp_path, "green", "ep-main", model)
        ),
    )
    assert fake.log.count("CodeVersions_List") == 1
    assert fake.log.count("CodeVersions_CreateOrGetStartPendingUpload") == 0
    assert fake.log.count("CodeVersions_CreateOrUpdate") == 0
    fake.clock.advance(fake.durations["onlineDeployments"])
    assert green.result(timeout=30).provisioning_state == "Succeeded"

    endpoint = ml.online_endpoints.get("ep-main")
    endpoint.traffic = {"blue": 90, "green": 10}
    updated = within(
        60, lambda: ml.online_endpoints.begin_create_or_update(endpoint).result(timeout=30)
    )
    assert updated.traffic == {"blue": 90, "green": 10}
    stored = fake.state.online_endpoint("ep-main", azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert sorted(d.name for d in ml.online_deployments.list("ep-main")) == ["blue", "green"]

    # Like the service: a deployment that takes traffic cannot be deleted, traffic must add up.
    with pytest.raises(HttpResponseError, match="traffic"):
        within(30, lambda: ml.online_deployments.begin_delete("blue", "ep-main").result(timeout=20))
    endpoint.traffic = {"blue": 50, "green": 10}
    with pytest.raises(HttpResponseError, match="100"):
        within(30, lambda: ml.online_endpoints.begin_create_or_update(endpoint).result(timeout=20))
    endpoint.traffic = {"green": 100}
    within(60, lambda: ml.online_endpoints.begin_create_or_update(endpoint).result(timeout=30))

    # A delete that takes clock time answers 202 + Location and is polled there.
    fake.durations["delete"] = 30
    fake.log.reset()
    delete = ml.online_deployments.begin_delete("blue", "ep-main")
    accepted = fake.log.find("OnlineDeployments_Delete")
    assert [r.status for r in accepted] == [202]
    fake.clock.advance(30)
    within(40, lambda: delete.result(timeout=30))
    assert fake.log.count("(OperationResult)") >= 1
    assert fake.state.online_deployment("ep-main", "blue", azure_env.workspace) is None

    fake.durations["delete"] = 0
    within(30, lambda: ml.online_endpoints.begin_delete("ep-main").result(timeout=20))
    assert [e.name for e in ml.online_endpoints.list()] == []


def test_failed_deployment_reports_the_reason(azure_env: AzureEnv, tmp_path: Path) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    fake = azure_env.fake
    fake.durations["onlineDeployments"] = 0
    fake.faults.fail_provisioning(
        "broken", code="ImageBuildFailure", message="conda env could not be solved: pkg-x"
    )
    ml = azure_env.ml_client()
    model = _register_model(ml, tmp_path)
    within(
        60,
        lambda: ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="ep-fail")
        ).result(timeout=30),
    )
    poller = within(
        90,
        lambda: ml.online_deployments.begin_create_or_update(
            _deployment(tmp_path, "broken", "ep-fail", model)
        ),
    )
    with pytest.raises(HttpResponseError) as info:
        within(30, lambda: poller.result(timeout=20))
    assert "conda env could not be solved: pkg-x" in str(info.value)
    assert "ImageBuildFailure" in str(info.value)
    got = ml.online_deployments.get("broken", "ep-fail")
    assert got.provisioning_state == "Failed"


def test_traffic_changed_behind_the_clients_back_is_visible(azure_env: AzureEnv) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml = azure_env.ml_client()
    within(
        60,
        lambda: ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name="ep-drift")
        ).result(timeout=30),
    )
    azure_env.fake.state.set_traffic("ep-drift", {"green": 100}, azure_env.workspace)
    assert ml.online_endpoints.get("ep-drift").traffic == {"green": 100}
