"""The azureml backend's online endpoints through the reconcile core, on the fake's clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops.backends.azureml.backend import TAG_FINGERPRINT
from amlops.backends.base import TAG_OWNER, BackendError, ProvisioningState
from amlops.core.manifests import Manifest, load_tree
from amlops.core.provenance import TAG_MANIFEST
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler
from tests.azure.backend_support import (
    WS,
    MemoryStore,
    converge,
    make_backend,
    report,
    write_tree,
)
from tests.azure.conftest import AzureEnv

pytestmark = pytest.mark.slow

EP = "ep-main"


def _setup(azure_env: AzureEnv, tmp_path: Path, **kw: str) -> tuple[TreeReconciler, list[Manifest]]:
    backend = make_backend(azure_env)
    tree = write_tree(tmp_path / "tree", **kw)
    manifests = load_tree([tree], root=tree).manifests
    return TreeReconciler(backend, MemoryStore(), backend.learn), manifests


def test_endpoint_with_two_deployments_comes_up_and_then_writes_nothing(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    reconciler, manifests = _setup(azure_env, tmp_path)

    first = reconciler.reconcile(manifests)
    endpoint = report(first, "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.RECONCILING  # the deployments are Creating
    assert {r.kind for r in first if r.outcome.phase is Phase.READY} == {"Model"}
    # nothing waited: the deployments were started and are still Creating in Azure
    blue = fake.state.online_deployment(EP, "blue", azure_env.workspace)
    assert blue is not None and blue["properties"]["provisioningState"] == "Creating"

    reports = converge(reconciler, manifests, fake.clock)
    endpoint = report(reports, "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.READY, endpoint.outcome
    assert endpoint.status["traffic"] == {"blue": 90, "green": 10}
    assert endpoint.status["scoringUri"].startswith(f"https://{EP}.")
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert stored["tags"][TAG_OWNER] == "amlops-tests"
    assert stored["tags"][TAG_MANIFEST].endswith("endpoint.yaml")

    green = fake.state.online_deployment(EP, "green", azure_env.workspace)
    assert green is not None
    props = green["properties"]
    assert green["sku"]["capacity"] == 2
    assert props["instanceType"] == "Standard_DS3_v2"
    assert props["environmentVariables"] == {"MODE": "green"}
    assert props["model"].endswith("/models/base/versions/1")
    assert "/codes/" in props["codeConfiguration"]["codeId"]
    assert green["tags"][TAG_FINGERPRINT].startswith("sha256:")

    keys = reconciler.backend.get_endpoint_keys(WS, EP)
    assert keys.primary and keys.secondary and keys.primary != keys.secondary

    fake.log.reset()
    again = reconciler.reconcile(manifests)
    assert all(r.outcome.phase is Phase.READY for r in again)
    assert fake.log.writes == 0, fake.log.by_operation()


def test_a_failed_deployment_keeps_no_traffic_and_says_why(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    fake.faults.fail_provisioning(
        "green", code="ImageBuildFailure", message="conda env could not be solved: pkg-x"
    )
    reconciler, manifests = _setup(azure_env, tmp_path)
    reports = converge(reconciler, manifests, fake.clock)
    endpoint = report(reports, "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.STALLED
    assert endpoint.outcome.reason == "DeploymentFailed"
    assert "conda env could not be solved: pkg-x" in endpoint.outcome.message
    assert "green" in endpoint.outcome.message
    assert endpoint.status["traffic"] == {"blue": 100, "green": 0}
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == {"blue": 100}
    states = {d.name: d for d in reconciler.backend.list_deployments(WS, EP)}
    assert states["green"].provisioning_state is ProvisioningState.FAILED


def test_drift_in_azure_is_corrected_by_the_next_pass(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    reconciler, manifests = _setup(azure_env, tmp_path)
    converge(reconciler, manifests, fake.clock)

    # someone moves all traffic in the portal
    fake.state.set_traffic(EP, {"green": 100}, azure_env.workspace)
    reports = converge(reconciler, manifests, fake.clock)
    assert report(reports, "Endpoint", EP).outcome.phase is Phase.READY
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == {"blue": 90, "green": 10}

    # ... or deletes a deployment (and the traffic that went to it) and strips the tags of another
    with fake.state.locked() as state:
        state.resources.pop(
            state.resource_id(
                azure_env.workspace, "onlineEndpoints", EP, "deployments", "green"
            ).lower()
        )
        blue_id = state.resource_id(
            azure_env.workspace, "onlineEndpoints", EP, "deployments", "blue"
        )
        state.resources[blue_id.lower()]["tags"] = {}
    fake.state.set_traffic(EP, {"blue": 100}, azure_env.workspace)
    reports = converge(reconciler, manifests, fake.clock)
    assert report(reports, "Endpoint", EP).outcome.phase is Phase.READY
    green = fake.state.online_deployment(EP, "green", azure_env.workspace)
    blue = fake.state.online_deployment(EP, "blue", azure_env.workspace)
    assert green is not None and green["properties"]["provisioningState"] == "Succeeded"
    assert blue is not None and blue["tags"][TAG_OWNER] == "amlops-tests"
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == {"blue": 90, "green": 10}


def test_tags_stripped_from_the_endpoint_alone_are_put_back(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    reconciler, manifests = _setup(azure_env, tmp_path)
    converge(reconciler, manifests, fake.clock)
    before = fake.state.online_endpoint(EP, azure_env.workspace)
    assert before is not None and before["tags"][TAG_OWNER] == "amlops-tests"

    # someone strips the endpoint's tags in the portal; its traffic and deployments stay
    with fake.state.locked() as state:
        state.resources[state.resource_id(azure_env.workspace, "onlineEndpoints", EP).lower()][
            "tags"
        ] = {}
    fake.log.reset()
    reports = converge(reconciler, manifests, fake.clock)
    assert report(reports, "Endpoint", EP).outcome.phase is Phase.READY
    after = fake.state.online_endpoint(EP, azure_env.workspace)
    assert after is not None and after["tags"] == before["tags"]
    assert after["properties"]["traffic"] == {"blue": 90, "green": 10}
    # the endpoint was written again, its deployments were not
    assert fake.log.count("OnlineEndpoints_CreateOrUpdate") == 1
    assert fake.log.count("OnlineDeployments_CreateOrUpdate") == 0


def test_an_endpoint_of_another_owner_is_not_adopted(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    tree = write_tree(tmp_path / "tree")
    manifests = load_tree([tree], root=tree).manifests
    other = make_backend(azure_env, owner="team-b")
    TreeReconciler(other, MemoryStore(), other.learn).reconcile(manifests)  # team-b's, first
    assert fake.state.online_endpoint(EP, azure_env.workspace) is not None

    backend = make_backend(azure_env)
    ours = TreeReconciler(backend, MemoryStore(), backend.learn)
    fake.log.reset()
    reports = ours.reconcile(manifests)
    endpoint = report(reports, "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.STALLED
    assert endpoint.outcome.reason == "BackendRefused"
    assert "team-b" in endpoint.outcome.message
    assert not [r for r in fake.log.records if r.is_write and "onlineEndpoints" in r.path]
    with pytest.raises(BackendError, match="team-b"):
        ours.backend.delete_endpoint(WS, EP)


def test_deleting_the_manifests_deletes_the_endpoint_and_models_unless_retained(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    reconciler, manifests = _setup(azure_env, tmp_path)
    converge(reconciler, manifests, fake.clock)
    retained = [m for m in manifests if m.kind == "Model" and m.name == "base"]
    reconciler.reconcile([])
    assert fake.state.online_endpoint(EP, azure_env.workspace) is None
    models = fake.state.resource_id(azure_env.workspace, "models")
    assert fake.state.get(f"{models}/served/versions/1") is None
    assert fake.state.get(f"{models}/base/versions/1") is None
    assert retained  # the Retain case runs through `amlops up` (test_backend_up.py)


def test_invoke_goes_to_the_scoring_uri_with_the_key_and_never_shows_it(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    """The fake serves no scoring host: invoke gets as far as connecting to Azure's scoring
    URI, and the error it raises names the endpoint and holds no key."""
    reconciler, manifests = _setup(azure_env, tmp_path)
    converge(reconciler, manifests, azure_env.fake.clock)
    backend = reconciler.backend
    keys = backend.get_endpoint_keys(WS, EP)
    with pytest.raises(BackendError) as info:
        backend.invoke(WS, EP, b'{"data": 1}')
    assert EP in str(info.value)
    assert keys.primary not in str(info.value) and keys.secondary not in str(info.value)
    with pytest.raises(BackendError, match="does not exist"):
        backend.invoke(WS, "nowhere", b"{}")


def test_mirror_traffic_and_a_deployment_leaving_the_manifest(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    split = "traffic: {blue: 100, green: 0}\n    mirror_traffic: {green: 20}"
    reconciler, manifests = _setup(azure_env, tmp_path, split=split)
    endpoint = report(converge(reconciler, manifests, fake.clock), "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.READY, endpoint.outcome
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None
    assert stored["properties"]["traffic"] == {"blue": 100}
    assert stored["properties"]["mirrorTraffic"] == {"green": 20}
    fake.log.reset()
    reconciler.reconcile(manifests)
    assert fake.log.writes == 0, fake.log.by_operation()  # the 0% entry reads back equal

    # green leaves the manifest: its mirror traffic goes first, then the deployment
    tree = tmp_path / "tree"
    text = (tree / "endpoint.yaml").read_text()
    text = text.replace(
        "traffic: {blue: 100, green: 0}\n    mirror_traffic: {green: 20}", "traffic: {blue: 100}"
    )
    (tree / "endpoint.yaml").write_text(text[: text.index("    - name: green")])
    manifests = load_tree([tree], root=tree).manifests
    endpoint = report(converge(reconciler, manifests, fake.clock), "Endpoint", EP)
    assert endpoint.outcome.phase is Phase.READY, endpoint.outcome
    assert fake.state.online_deployment(EP, "green", azure_env.workspace) is None
    stored = fake.state.online_endpoint(EP, azure_env.workspace)
    assert stored is not None and not stored["properties"].get("mirrorTraffic")


NO_CODE = """\
apiVersion: amlops.io/v1alpha1
kind: Endpoint
metadata:
  name: ep-mlflow
spec:
  workspace: dev
  endpoint: {name: ep-mlflow, traffic: {only: 100}}
  deployments:
    - name: only
      model: azureml:base:1
      instance_type: Standard_DS3_v2
"""


def test_a_deployment_without_code_is_a_no_code_deployment(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    tree = write_tree(tmp_path / "tree")
    (tree / "endpoint.yaml").write_text(NO_CODE)
    backend = make_backend(azure_env)
    reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)
    manifests = load_tree([tree], root=tree).manifests
    endpoint = report(
        converge(reconciler, manifests, azure_env.fake.clock), "Endpoint", "ep-mlflow"
    )
    assert endpoint.outcome.phase is Phase.READY, endpoint.outcome
    stored = azure_env.fake.state.online_deployment("ep-mlflow", "only", azure_env.workspace)
    assert stored is not None and not stored["properties"].get("codeConfiguration")
    assert not stored["properties"].get("environmentId")


CATALOG_MODEL = "azureml://registries/azureml/models/phi-3-mini/versions/3"


def test_a_model_catalog_model_is_deployed_as_it_is(azure_env: AzureEnv, tmp_path: Path) -> None:
    """A registry model is passed through to the deployment: nothing registered in the
    workspace, and the deployment names the registry's asset."""
    tree = write_tree(tmp_path / "tree")
    (tree / "endpoint.yaml").write_text(
        NO_CODE.replace("azureml:base:1", CATALOG_MODEL).replace("ep-mlflow", "ep-catalog")
    )
    backend = make_backend(azure_env)
    reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)
    manifests = load_tree([tree], root=tree).manifests
    reports = converge(reconciler, manifests, azure_env.fake.clock)
    endpoint = report(reports, "Endpoint", "ep-catalog")
    assert endpoint.outcome.phase is Phase.READY, endpoint.outcome
    stored = azure_env.fake.state.online_deployment("ep-catalog", "only", azure_env.workspace)
    assert stored is not None and stored["properties"]["model"] == CATALOG_MODEL
    assert azure_env.fake.log.count("ModelVersions_CreateOrUpdate") == len(
        [r for r in reports if r.kind == "Model"]
    )
