"""The azureml backend's serverless endpoints through the reconcile core, on the fake's clock:
the Marketplace subscription first, the endpoint with its owner and provenance tags, keys,
drift put back, another owner's endpoint refused, and the manifest's deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops.backends.base import TAG_OWNER, BackendError
from amlops.core.manifests import Manifest, load_tree
from amlops.core.provenance import TAG_MANIFEST
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler
from tests.azure.backend_support import WS, MemoryStore, converge, make_backend, report
from tests.azure.conftest import AzureEnv

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

EP = "llama-chat"
META = "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct"
SUBSCRIPTION = "meta-llama-3-8b-instruct"

WORKSPACE = """\
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: dev
spec:
  environment: dev
  location: westeurope
  resourceGroup: rg-dev
  tags: {owner: ml-platform@contoso.com, cost-center: "4711"}
"""

SERVERLESS = """\
apiVersion: amlops.io/v1alpha1
kind: ServerlessEndpoint
metadata:
  name: llama
spec:
  workspace: dev
  endpoint:
    name: llama-chat
    model_id: {model_id}
"""


def _manifests(tmp_path: Path, model_id: str = META) -> list[Manifest]:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "workspace.yaml").write_text(WORKSPACE)
    (tree / "serverless.yaml").write_text(SERVERLESS.format(model_id=model_id))
    return [m for m in load_tree([tree], root=tree).manifests if m.kind == "ServerlessEndpoint"]


def _reconciler(azure_env: AzureEnv, owner: str = "amlops-tests") -> TreeReconciler:
    backend = make_backend(azure_env, owner=owner)
    return TreeReconciler(backend, MemoryStore(), backend.learn)


def _endpoint_id(azure_env: AzureEnv) -> str:
    return azure_env.fake.state.resource_id(azure_env.workspace, "serverlessEndpoints", EP)


def test_a_marketplace_model_is_subscribed_then_served_and_then_writes_nothing(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    fake.durations["marketplaceSubscriptions"] = 30
    fake.durations["serverlessEndpoints"] = 60
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path)

    first = report(reconciler.reconcile(manifests), "ServerlessEndpoint", "llama")
    # nothing waited: the subscription was started and is still Creating in Azure
    assert (first.outcome.phase, first.outcome.reason) == (Phase.RECONCILING, "Subscribing")
    subscription = fake.state.get(
        fake.state.resource_id(azure_env.workspace, "marketplaceSubscriptions", SUBSCRIPTION)
    )
    assert subscription is not None and subscription["properties"]["modelId"] == META
    assert fake.state.get(_endpoint_id(azure_env)) is None  # the endpoint waits for it

    done = report(converge(reconciler, manifests, fake.clock), "ServerlessEndpoint", "llama")
    assert (done.outcome.phase, done.outcome.reason) == (Phase.READY, "Serving"), done.outcome
    assert done.status["scoringUri"].startswith(f"https://{EP}.")
    assert done.status["marketplaceSubscription"] == SUBSCRIPTION
    stored = fake.state.get(_endpoint_id(azure_env))
    assert stored is not None
    assert stored["properties"]["modelSettings"]["modelId"] == META
    assert stored["tags"][TAG_OWNER] == "amlops-tests"
    assert stored["tags"][TAG_MANIFEST].endswith("serverless.yaml")
    subscribed = [r for r in fake.log.records if r.operation_id and "Marketplace" in r.operation_id]
    assert subscribed[0].operation_id == "MarketplaceSubscriptions_Get"  # looked for first

    keys = reconciler.backend.get_serverless_endpoint_keys(WS, EP)
    assert keys.primary and keys.secondary and keys.primary != keys.secondary

    fake.log.reset()
    again = report(reconciler.reconcile(manifests), "ServerlessEndpoint", "llama")
    assert again.outcome.phase is Phase.READY
    assert fake.log.writes == 0, fake.log.by_operation()


def test_drift_a_deleted_endpoint_is_created_again(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path)
    converge(reconciler, manifests, fake.clock)
    assert fake.state.delete(_endpoint_id(azure_env))  # deleted in the portal

    done = report(converge(reconciler, manifests, fake.clock), "ServerlessEndpoint", "llama")
    assert done.outcome.phase is Phase.READY, done.outcome
    assert fake.state.get(_endpoint_id(azure_env)) is not None
    assert fake.log.count("ServerlessEndpoints_CreateOrUpdate") == 2
    assert fake.log.count("MarketplaceSubscriptions_CreateOrUpdate") == 1


def test_drift_an_endpoint_serving_another_model_is_replaced(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path)
    converge(reconciler, manifests, fake.clock)
    stored = fake.state.get(_endpoint_id(azure_env))
    assert stored is not None
    other = "azureml://registries/azureml-meta/models/Llama-2-7b-chat"
    stored["properties"]["modelSettings"]["modelId"] = other
    fake.state.put(_endpoint_id(azure_env), stored)

    done = report(converge(reconciler, manifests, fake.clock), "ServerlessEndpoint", "llama")
    assert done.outcome.phase is Phase.READY, done.outcome
    back = fake.state.get(_endpoint_id(azure_env))
    assert back is not None and back["properties"]["modelSettings"]["modelId"] == META
    assert fake.log.count("ServerlessEndpoints_Delete") == 1


def test_an_endpoint_of_another_owner_is_refused(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    manifests = _manifests(tmp_path)
    converge(_reconciler(azure_env, owner="team-b"), manifests, fake.clock)

    ours = _reconciler(azure_env)
    fake.log.reset()
    refused = report(ours.reconcile(manifests), "ServerlessEndpoint", "llama")
    assert (refused.outcome.phase, refused.outcome.reason) == (Phase.STALLED, "BackendRefused")
    assert "team-b" in refused.outcome.message
    assert not [r for r in fake.log.records if r.is_write and "serverlessEndpoints" in r.path]
    with pytest.raises(BackendError, match="team-b"):
        ours.backend.delete_serverless_endpoint(WS, EP)


def test_deleting_the_manifest_deletes_the_endpoint_and_keeps_the_subscription(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    reconciler = _reconciler(azure_env)
    converge(reconciler, _manifests(tmp_path), fake.clock)
    reconciler.reconcile([])
    assert fake.state.get(_endpoint_id(azure_env)) is None
    kept = fake.state.resource_id(azure_env.workspace, "marketplaceSubscriptions", SUBSCRIPTION)
    assert fake.state.get(kept) is not None


def test_a_microsoft_model_needs_no_subscription(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path, "azureml://registries/azureml/models/Phi-3-mini-4k-instruct")
    done = report(converge(reconciler, manifests, fake.clock), "ServerlessEndpoint", "llama")
    assert done.outcome.phase is Phase.READY, done.outcome
    assert fake.log.count("MarketplaceSubscriptions_Get") == 0
    assert fake.log.count("MarketplaceSubscriptions_CreateOrUpdate") == 0


def test_invoke_finds_a_serverless_endpoint_and_never_shows_its_key(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    """`invoke` on a name that is no online endpoint goes to the serverless endpoint's scoring
    URI with its key; the fake serves no scoring host, so it ends in an error that names the
    endpoint and holds no key."""
    reconciler = _reconciler(azure_env)
    manifests = _manifests(tmp_path)
    ready = report(
        converge(reconciler, manifests, azure_env.fake.clock), "ServerlessEndpoint", "llama"
    )
    assert ready.outcome.phase is Phase.READY, ready.outcome
    backend = reconciler.backend
    key = backend.get_serverless_endpoint_keys(WS, EP).primary
    azure_env.fake.log.reset()
    with pytest.raises(BackendError) as info:
        backend.invoke(WS, EP, b"{}")
    assert EP in str(info.value) and key not in str(info.value)
    assert azure_env.fake.log.count("ServerlessEndpoints_ListKeys") == 1
