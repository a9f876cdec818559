"""Injected faults as the SDK's azure-core pipeline sees them."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.azure.conftest import AzureEnv
from tests.azure.deadline import within

pytestmark = pytest.mark.slow


def _endpoint(azure_env: AzureEnv, name: str) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml = azure_env.ml_client()
    within(
        60,
        lambda: ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=name)).result(
            timeout=30
        ),
    )


def test_429_with_retry_after_is_retried_after_waiting(azure_env: AzureEnv) -> None:
    _endpoint(azure_env, "ep-429")
    fake = azure_env.fake
    fake.log.reset()
    rule = fake.faults.inject("OnlineEndpoints_Get", 429, retry_after=1, times=1)
    ep = within(30, lambda: azure_env.ml_client().online_endpoints.get("ep-429"))
    assert ep.name == "ep-429"
    assert rule.hits == 1
    gets = fake.log.find("OnlineEndpoints_Get")
    assert [r.status for r in gets] == [429, 200]
    assert gets[0].fault and not gets[1].fault
    assert gets[1].monotonic - gets[0].monotonic >= 1.0


def test_503_then_500_are_retried(azure_env: AzureEnv) -> None:
    _endpoint(azure_env, "ep-5xx")
    fake = azure_env.fake
    fake.log.reset()
    fake.faults.inject("OnlineEndpoints_Get", 503, retry_after=0, times=1)
    fake.faults.inject("OnlineEndpoints_Get", 500, retry_after=0, times=1)
    assert within(60, lambda: azure_env.ml_client().online_endpoints.get("ep-5xx")).name == "ep-5xx"
    assert [r.status for r in fake.log.find("OnlineEndpoints_Get")] == [503, 500, 200]


def test_persistent_503_surfaces_after_retries(azure_env: AzureEnv) -> None:
    fake = azure_env.fake
    fake.faults.inject(r"/onlineEndpoints/ep-down$", 503, retry_after=0, times=None, method="GET")
    ml = azure_env.ml_client(retry_total=2)
    with pytest.raises(HttpResponseError) as info:
        within(60, lambda: ml.online_endpoints.get("ep-down"))
    assert info.value.status_code == 503
    assert fake.log.count("OnlineEndpoints_Get", status=503) == 3  # first try + 2 retries


def test_slow_answer_is_waited_for(azure_env: AzureEnv) -> None:
    fake = azure_env.fake
    fake.faults.inject("OnlineEndpoints_Get", None, delay=1.5)
    ml = azure_env.ml_client()
    with pytest.raises(ResourceNotFoundError):
        within(30, lambda: ml.online_endpoints.get("nowhere"))
    record = fake.log.find("OnlineEndpoints_Get")[0]
    assert record.status == 404 and record.fault


def test_requests_without_the_arm_audience_are_refused(azure_env: AzureEnv) -> None:
    import requests

    from tests.azure.fake_arm import make_jwt

    fake = azure_env.fake
    url = f"{fake.base_url}{fake.state.workspace_id(fake.workspace)}?api-version=2024-04-01"
    wrong = requests.get(
        url, headers={"Authorization": f"Bearer {make_jwt('https://elsewhere')}"}, timeout=10
    )
    assert wrong.status_code == 401
    right = requests.get(
        url, headers={"Authorization": f"Bearer {make_jwt(fake.audience)}"}, timeout=10
    )
    assert right.status_code == 200 and right.json()["name"] == fake.workspace
