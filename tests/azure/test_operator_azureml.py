"""The operator (``amlops operator``, a child process with ``AMLOPS_BACKEND=azureml``) on a real
kube-apiserver, reconciling the example platform into the fake Azure ML API and Azurite.

The objects come from ``amlops apply`` of a Git copy of manifests/ (without its pipeline; the
model the pipeline would make is a Model), so that their ``amlops.io/source-file`` names the
manifest the operator resolves ``path:`` and ``code:`` against (``AMLOPS_SOURCE_ROOT``). The
subprocess gets the harness's FakeCredential as ``DefaultAzureCredential`` through the
test-only sitecustomize (``AMLOPS_TEST_FAKE_CREDENTIAL=1``): the product builds its credential as
in a cluster.

The API server is its own (the fixtures of tests/operator, imported here): the suite's local
operator watches every namespace of the other one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import TAG_OWNER
from amlops.cli import main
from amlops.core.provenance import (
    TAG_COMMIT,
    TAG_MANIFEST,
    TAG_OBJECT,
    TAG_PIPELINE,
    TAG_RUN,
    TAG_TRIGGER,
)
from tests.azure.backend_support import REPO, example_platform
from tests.azure.conftest import AzureEnv
from tests.envtest.apiserver import Cluster
from tests.operator import conftest as operator_fixtures
from tests.operator.harness import (
    Kube,
    OperatorProcess,
    condition,
    is_ready,
    operator_env,
    proxied_kubeconfig,
    token_of,
    wait_for,
)
from tests.operator.proxy import Proxy

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

# tests/operator's API server fixtures, this module's own instances (see above)
cluster = operator_fixtures.cluster
kube = operator_fixtures.kube
proxy = operator_fixtures.proxy

DEV, PROD = "mlw-platform-dev", "mlw-platform-prod"  # amlops workspaces = namespaces
PROD_AZURE = "ws-amlops-prod"  # the fake's second workspace
OPERATOR_NS = "amlops-system"
OWNER = f"amlops-operator:{OPERATOR_NS}"
ENDPOINT = "support-online"
SPLIT = {"blue": 90, "green": 10}


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """manifests/ without its pipeline, the model it would make a Model; a Git checkout.
    ``@pytest.mark.parametrize("platform", ["pipelines"], indirect=True)``: manifests/ as it
    is, its pipelines with it."""
    if getattr(request, "param", None) == "pipelines":
        copy = Path(shutil.copytree(REPO / "manifests", tmp_path / "platform"))
    else:
        copy = example_platform(tmp_path / "platform")
    _git(copy, "init", "-q")
    _git(copy, "add", ".")
    _git(copy, "commit", "-q", "-m", "platform")
    return copy


@pytest.fixture
def azure_operator(
    azure_env: AzureEnv, cluster: Cluster, proxy: Proxy, platform: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """``amlops operator`` with the azureml backend, pointed at the fake cloud, as the shipped
    ServiceAccount behind the counting proxy; fails the test if it was ever forbidden."""
    fake = azure_env.fake
    if PROD_AZURE not in fake._workspaces():
        fake.add_workspace(PROD_AZURE)
        fake.ensure_container(fake.default_container(PROD_AZURE))
    sa = cluster.service_account_kubeconfig(OPERATOR_NS, "amlops-operator")
    kubeconfig = proxied_kubeconfig(tmp_path / "kubeconfig", proxy, token_of(sa), OPERATOR_NS)
    env = operator_env(
        kubeconfig,
        tmp_path / "state",
        platform,
        AMLOPS_BACKEND="azureml",
        AMLOPS_AZURE_SUBSCRIPTION_ID=azure_env.subscription_id,
        AMLOPS_AZURE_RESOURCE_GROUP=azure_env.resource_group,
        AMLOPS_AZURE_WORKSPACES=json.dumps(
            {DEV: {"name": azure_env.workspace}, PROD: {"name": PROD_AZURE}}
        ),
        AMLOPS_AZURE_UPLOAD_TIMEOUT="60",
        POD_NAMESPACE=OPERATOR_NS,
        AMLOPS_TEST_FAKE_CREDENTIAL="1",
    )
    # the CA, the fake's cloud, and the sitecustomize hook first on the path
    env.update({k: v for k, v in azure_env.env.items() if k != "PYTHONPATH"})
    env["PYTHONPATH"] = os.pathsep.join([azure_env.env["PYTHONPATH"], env["PYTHONPATH"]])
    since = proxy.mark()
    proc = OperatorProcess(env, tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
    forbidden = [r for r in proxy.records(since) if r.status == 403]
    assert not forbidden, "the shipped ClusterRole lacks: " + ", ".join(
        f"{r.verb} {r.path}" for r in forbidden
    )


@pytest.fixture
def applied(
    azure_env: AzureEnv,
    cluster: Cluster,
    platform: Path,
    azure_operator: OperatorProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The platform's computes made (Pulumi's part), then ``amlops apply`` of the platform for
    the running operator."""
    for workspace in (azure_env.workspace, PROD_AZURE):
        azure_env.fake.jobs.add_compute("gpu-t4", workspace, "Standard_NC4as_T4_v3")
        azure_env.fake.jobs.add_compute(
            "gpu-a100", workspace, "Standard_NC24ads_A100_v4", max_nodes=2
        )
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig_path))
    assert main(["apply", str(platform), "--instance", "azureml-example"]) == 0


def _wait_ready(
    azure_env: AzureEnv, kube: Kube, kind: str, name: str, timeout: float, what: str
) -> dict[str, Any]:
    """The object once Ready, 30 s more of the fake's clock between looks (a deployment takes
    60 s of it, a pipeline step is queued 10 s and runs 60 s)."""

    def probe() -> dict[str, Any] | None:
        obj = kube.get(DEV, kind, name)
        if obj is not None and is_ready(obj):
            return obj
        azure_env.fake.clock.advance(30)
        return None

    return wait_for(probe, timeout=timeout, every=0.5, what=what)


def _model(azure_env: AzureEnv, workspace: str, name: str) -> dict[str, Any] | None:
    state = azure_env.fake.state
    return state.get(state.resource_id(workspace, "models", name, "versions", "1"))


def _traffic(azure_env: AzureEnv) -> dict[str, int] | None:
    stored = azure_env.fake.state.online_endpoint(ENDPOINT, azure_env.workspace)
    return None if stored is None else dict(stored["properties"]["traffic"])


def _tags(azure_env: AzureEnv) -> dict[str, str] | None:
    stored = azure_env.fake.state.online_endpoint(ENDPOINT, azure_env.workspace)
    return None if stored is None else dict(stored["tags"])


def _reasons(kube: Kube, namespace: str, name: str) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in kube.events(namespace, name)]


def _corrections(kube: Kube) -> list[str]:
    """The messages of the Endpoint's DriftCorrected Events, oldest first."""
    events = kube.events(DEV, ENDPOINT)
    return [str(e.message) for e in events if e.reason == "DriftCorrected"]


def test_operator_brings_the_example_platform_to_ready_in_azure_ml_corrects_drift_and_retains(
    azure_env: AzureEnv, kube: Kube, platform: Path, applied: None
) -> None:
    fake = azure_env.fake
    models = [(DEV, "slm-base"), (DEV, "support-slm"), (PROD, "slm-base-prod")]
    for namespace, name in models:
        obj = kube.wait(namespace, "Model", name, is_ready, timeout=60, what="registered")
        assert condition(obj)["reason"] == "Registered"

    obj = _wait_ready(azure_env, kube, "Endpoint", ENDPOINT, 180, f"Endpoint {ENDPOINT} serving")
    assert condition(obj)["reason"] == "Serving"
    assert obj["status"]["traffic"] == SPLIT
    assert {d: s["state"] for d, s in obj["status"]["deployments"].items()} == {
        "blue": "Succeeded",
        "green": "Succeeded",
    }
    stored = fake.state.online_endpoint(ENDPOINT, azure_env.workspace)
    assert stored is not None and stored["properties"]["traffic"] == SPLIT
    assert obj["status"]["scoringUri"] == stored["properties"]["scoringUri"]
    commit = _git(platform, "rev-parse", "HEAD")
    assert stored["tags"][TAG_OWNER] == OWNER
    assert stored["tags"][TAG_COMMIT] == commit
    assert stored["tags"][TAG_MANIFEST] == "endpoints/support-online.yaml"
    assert stored["tags"][TAG_OBJECT] == f"{DEV}/{ENDPOINT}"
    for workspace, name in ((azure_env.workspace, "slm-base"), (PROD_AZURE, "slm-base")):
        version = _model(azure_env, workspace, name)
        assert version is not None and version["properties"]["tags"][TAG_OWNER] == OWNER
    secret = kube.core.read_namespaced_secret(f"{ENDPOINT}-keys", DEV)
    assert set(secret.data) >= {"primaryKey", "secondaryKey", "scoringUri"}

    # someone moves all traffic to blue in the portal: the drift timer puts the split back
    before = len(_corrections(kube))
    fake.state.set_traffic(ENDPOINT, {"blue": 100}, azure_env.workspace)
    wait_for(lambda: _traffic(azure_env) == SPLIT, timeout=30, what="the split put back")
    corrected = wait_for(
        lambda: _corrections(kube)[before:], timeout=15, what="a DriftCorrected Event"
    )
    assert corrected[0].startswith(f"apply endpoint {ENDPOINT} (blue 90%, green 10%)")

    # ... or strips the endpoint's tags, its traffic untouched: they are put back
    tags = dict(stored["tags"])
    with fake.state.locked() as state:
        endpoint_id = state.resource_id(azure_env.workspace, "onlineEndpoints", ENDPOINT)
        state.resources[endpoint_id.lower()]["tags"] = {}
    wait_for(lambda: _tags(azure_env) == tags, timeout=30, what="the endpoint's tags put back")

    # the objects are deleted: the endpoint first (it serves the models), then the models
    kube.delete(DEV, "Endpoint", ENDPOINT)
    kube.wait_gone(DEV, "Endpoint", ENDPOINT, timeout=60)
    assert fake.state.online_endpoint(ENDPOINT, azure_env.workspace) is None
    # its keys Secret goes with it through its ownerReference, by the garbage collector, which
    # envtest does not run: done here, or the module's next Endpoint of that name would find a
    # Secret it does not own (KeysSecretConflict)
    secret = kube.core.read_namespaced_secret(f"{ENDPOINT}-keys", DEV)
    assert [r.uid for r in secret.metadata.owner_references] == [obj["metadata"]["uid"]]
    kube.core.delete_namespaced_secret(f"{ENDPOINT}-keys", DEV)
    for namespace, name in models:
        kube.delete(namespace, "Model", name)
    for namespace, name in models:
        kube.wait_gone(namespace, "Model", name, timeout=60)
    assert _model(azure_env, azure_env.workspace, "slm-base") is None
    assert _model(azure_env, azure_env.workspace, "support-slm") is None
    # the prod model is Retain: it stays in Azure ML, its Model object says so
    assert _model(azure_env, PROD_AZURE, "slm-base") is not None
    assert ("Normal", "Retained") in _reasons(kube, PROD, "slm-base-prod")
    assert ("Normal", "Deleted") in _reasons(kube, DEV, "slm-base")


DRIFT_S = 2.0  # AMLOPS_DRIFT_INTERVAL of tests.operator.harness.operator_env
SLM_PIPELINE = "finetune-support-slm"
CHAT_PIPELINE = "finetune-support-chat"  # the model catalog's component: Azure ML only


def _jobs_by_pipeline(azure_env: AzureEnv) -> dict[str, list[dict[str, Any]]]:
    jobs: dict[str, list[dict[str, Any]]] = {}
    for job in azure_env.fake.jobs.jobs():
        pipeline = job["properties"].get("tags", {}).get(TAG_PIPELINE)
        if pipeline is not None:
            jobs.setdefault(pipeline, []).append(job)
    return jobs


@pytest.mark.parametrize("platform", ["pipelines"], indirect=True)
def test_operator_runs_the_example_fine_tuning_pipeline_in_azure_ml_and_registers_its_model(
    azure_env: AzureEnv, kube: Kube, platform: Path, applied: None
) -> None:
    fake = azure_env.fake

    obj = _wait_ready(azure_env, kube, "Pipeline", SLM_PIPELINE, 240, f"{SLM_PIPELINE} run")
    assert condition(obj)["reason"] == "Succeeded"
    status = obj["status"]
    assert status["phase"] == "Completed"
    # (a map: the API server keeps its keys sorted, not in the run's order)
    assert set(status["steps"]) == {"prep", "finetune", "evaluate", "register"}
    assert {s["state"] for s in status["steps"].values()} == {"Completed"}

    jobs = _jobs_by_pipeline(azure_env)
    assert len(jobs[SLM_PIPELINE]) == 1
    job = jobs[SLM_PIPELINE][0]
    run_id = status["runId"]
    assert job["name"] == run_id and job["properties"]["status"] == "Completed"
    commit = _git(platform, "rev-parse", "HEAD")
    job_tags = job["properties"]["tags"]
    assert job_tags[TAG_OWNER] == OWNER and job_tags[TAG_TRIGGER] == "change"
    assert job_tags[TAG_COMMIT] == commit
    children = {c["displayName"]: c for c in fake.jobs.children(run_id)}
    assert children["finetune"]["compute"]["target"] == "gpu-a100"
    assert children["prep"]["compute"]["target"] == "gpu-t4"

    # its model output, registered by amlops with the run's provenance
    assert status["outputs"] == {"registered_model": "support-slm:1"}
    model = _model(azure_env, azure_env.workspace, "support-slm")
    assert model is not None
    props = model["properties"]
    assert props["modelUri"] == f"azureml://jobs/{run_id}/outputs/registered_model"
    tags = props["tags"]
    assert tags[TAG_RUN] == run_id and tags[TAG_OWNER] == OWNER
    assert tags[TAG_COMMIT] == commit
    assert tags[TAG_MANIFEST] == f"pipelines/{SLM_PIPELINE}.yaml"
    assert tags[TAG_OBJECT] == f"{DEV}/{SLM_PIPELINE}"

    # the catalog's pipeline went to Azure ML too, its registry component as written
    chat = _wait_ready(azure_env, kube, "Pipeline", CHAT_PIPELINE, 180, f"{CHAT_PIPELINE} run")
    assert condition(chat)["reason"] == "Succeeded"
    chat_job = fake.jobs.job(chat["status"]["runId"])
    assert chat_job is not None
    component = chat_job["properties"]["jobs"]["finetune"]["componentId"]
    assert component.startswith("azureml://registries/azureml/components/")

    # the endpoint serves what the run registered (blue: support-slm:1)
    endpoint = _wait_ready(azure_env, kube, "Endpoint", ENDPOINT, 180, f"{ENDPOINT} serving")
    assert endpoint["status"]["traffic"] == SPLIT

    # the next drift checks find the runs done and their fingerprints unchanged: no new job
    fake.log.reset()
    since = time.monotonic()
    wait_for(
        lambda: fake.log.reads > 0 and time.monotonic() - since > 3 * DRIFT_S,
        timeout=30,
        what="drift checks",
    )
    assert fake.log.count("Jobs_CreateOrUpdate") == 0
    assert fake.log.writes == 0, fake.log.operation_ids()
    assert [len(j) for j in _jobs_by_pipeline(azure_env).values()] == [1, 1]
    again = kube.get(DEV, "Pipeline", SLM_PIPELINE)
    assert again is not None and again["status"]["runId"] == run_id and is_ready(again)
