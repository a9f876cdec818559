"""A ServerlessEndpoint's keys go to its Secret through the same after-reconcile hook as an
Endpoint's, read with the serverless keys call - pure, no cluster."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from amlops import handlers
from amlops.backends.base import Backend, EndpointKeys
from amlops.core.locator import ObjectLocator
from amlops.handlers.objects import Resource
from amlops.handlers.runtime import Runtime
from amlops.reconcile import serverless_endpoint
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Outcome, Phase, build_status
from amlops.reconcile.inputs import Inputs, Source
from tests.operator.test_keys import Kube

KEYS = EndpointKeys("serverless-primary-0123456789", "serverless-secondary-0123456789")
URI = "https://llama-chat.westeurope.models.ai.azure.com"
SPEC = {
    "workspace": "ws",
    "endpoint": {
        "name": "llama-chat",
        "model_id": "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct",
    },
}


class ServerlessOnly:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def get_serverless_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys:
        self.asked.append((workspace, name))
        return KEYS

    def get_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys:
        raise AssertionError("an online endpoint's keys were read for a serverless endpoint")


class _Rt:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube


def test_the_keys_of_a_serverless_endpoint_are_published_into_its_secret() -> None:
    obj = Resource.of(
        {
            "kind": "ServerlessEndpoint",
            "metadata": {"name": "llama", "namespace": "team", "uid": "uid-2", "generation": 1},
            "spec": SPEC,
        }
    )
    source = Source(ObjectLocator("ServerlessEndpoint team/llama"), lambda p, v: Path(v))
    want = serverless_endpoint.desired(Inputs("ws", "llama", SPEC, 1, source))
    outcome = Outcome(Phase.READY, "Serving", f"serving at {URI} with {KEYS.primary}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    result = Result((), build_status(outcome, 1, None, now, scoringUri=URI), outcome)
    kube, backend = Kube(), ServerlessOnly()

    after = handlers.AFTER["ServerlessEndpoint"]
    out = after(cast(Runtime, _Rt(kube)), cast(Backend, backend), obj, want, result)

    assert backend.asked == [("ws", "llama-chat")]
    (secret,) = kube.applied
    assert secret["metadata"]["name"] == "llama-keys"
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "ServerlessEndpoint"
    data: dict[str, Any] = secret["data"]
    assert base64.b64decode(data["primaryKey"]).decode() == KEYS.primary
    assert out.status["keysSecret"]["name"] == "llama-keys"
    assert KEYS.primary not in str(out.status)  # a message quoting a key is scrubbed
