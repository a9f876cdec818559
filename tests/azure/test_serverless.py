"""Serverless endpoints and marketplace subscriptions through the real SDK."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.azure.conftest import AzureEnv
from tests.azure.deadline import within

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

MODEL_ID = "azureml://registries/azureml-meta/models/Llama-2-7b-chat"


def test_marketplace_subscription_and_serverless_endpoint(azure_env: AzureEnv) -> None:
    from azure.ai.ml.entities import MarketplaceSubscription, ServerlessEndpoint

    fake = azure_env.fake
    ml = azure_env.ml_client()
    sub = within(
        60,
        lambda: ml.marketplace_subscriptions.begin_create_or_update(
            MarketplaceSubscription(name="llama-sub", model_id=MODEL_ID)
        ).result(timeout=30),
    )
    assert sub.model_id == MODEL_ID
    assert ml.marketplace_subscriptions.get("llama-sub").status.lower() == "subscribed"
    assert fake.log.find("MarketplaceSubscriptions_CreateOrUpdate")[0].status == 201

    endpoint = within(
        60,
        lambda: ml.serverless_endpoints.begin_create_or_update(
            ServerlessEndpoint(name="llama-ep", model_id=MODEL_ID)
        ).result(timeout=30),
    )
    assert endpoint.provisioning_state.lower() == "succeeded"
    assert endpoint.scoring_uri.startswith("https://llama-ep.")
    got = ml.serverless_endpoints.get("llama-ep")
    assert got.model_id == MODEL_ID
    keys = ml.serverless_endpoints.get_keys("llama-ep")
    assert keys.primary_key and keys.secondary_key

    within(30, lambda: ml.serverless_endpoints.begin_delete("llama-ep").result(timeout=20))
    with pytest.raises(ResourceNotFoundError):
        ml.serverless_endpoints.get("llama-ep")
    within(30, lambda: ml.marketplace_subscriptions.begin_delete("llama-sub").result(timeout=20))
    with pytest.raises(ResourceNotFoundError):
        ml.marketplace_subscriptions.get("llama-sub")
    apis = {
        r.api_version for r in fake.log.records if r.operation_id and "Serverless" in r.operation_id
    }
    assert apis == {"2024-01-01-preview"}
