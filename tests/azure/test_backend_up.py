"""`amlops up --backend azureml --once` on a copy of the example platform, in process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlops.backends.base import TAG_OWNER
from amlops.cli import main
from amlops.core.provenance import TAG_PIPELINE, TAG_RUN
from tests.azure.backend_support import REPO, example_platform
from tests.azure.conftest import AzureEnv

pytestmark = pytest.mark.slow

PROD = "ws-amlops-prod"
CATALOG_COMPONENT = "azureml://registries/azureml/components/chat_completion_pipeline/labels/latest"


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    """manifests/ without its pipeline; the model the pipeline would make is a Model."""
    copy = example_platform(tmp_path / "platform")
    return copy


@pytest.fixture
def azure_up(azure_env: AzureEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureEnv]:
    """The process set up as `amlops up --backend azureml` would be against the fake: the
    cloud, the workspaces (dev and prod), a credential, and a clock that runs 120x."""
    fake = azure_env.fake
    if PROD not in fake._workspaces():
        fake.add_workspace(PROD)
        fake.ensure_container(fake.default_container(PROD))
    for key, value in azure_env.env.items():
        if key != "PYTHONPATH":
            monkeypatch.setenv(key, value)
    coordinates = {
        "subscription": azure_env.subscription_id,
        "resourceGroup": azure_env.resource_group,
    }
    monkeypatch.setenv(
        "AMLOPS_AZURE_WORKSPACES",
        json.dumps(
            {
                "mlw-platform-dev": {**coordinates, "name": azure_env.workspace},
                "mlw-platform-prod": {**coordinates, "name": PROD},
            }
        ),
    )
    monkeypatch.setattr(
        "amlops.backends.azureml.backend.default_credential", lambda: azure_env.credential
    )
    fake.clock.rate = 120.0
    try:
        yield azure_env
    finally:
        fake.clock.rate = 0.0


def _model(azure_env: AzureEnv, workspace: str, name: str) -> object:
    state = azure_env.fake.state
    return state.get(state.resource_id(workspace, "models", name, "versions", "1"))


def test_up_brings_the_platform_to_ready_in_azure_ml_and_deletes_it_but_retained(
    azure_up: AzureEnv, platform: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = azure_up.fake
    state_dir = str(tmp_path / "state")
    up = ["up", str(platform), "--backend", "azureml", "--once", "--state-dir", state_dir]
    assert main([*up, "--timeout", "120"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "support-online" in out and "Stalled" not in out

    endpoint = fake.state.online_endpoint("support-online", azure_up.workspace)
    assert endpoint is not None
    assert endpoint["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert endpoint["tags"][TAG_OWNER].startswith("amlops-up:")
    for workspace in (azure_up.workspace, PROD):
        assert _model(azure_up, workspace, "slm-base") is not None

    assert main(["status", "--state-dir", state_dir]) == 0
    status = capsys.readouterr().out
    assert "Serving" in status and "azureml" in status

    # the fake serves no scoring host: invoke reaches Azure's scoring URI and says so
    sample = platform / "src" / "score" / "sample-request.json"
    assert main(["invoke", "support-online", "--data", str(sample), "--state-dir", state_dir]) == 1
    failed = capsys.readouterr()
    assert "support-online" in failed.err and "Traceback" not in failed.err + failed.out

    # the models and the endpoint leave Git: deleted in Azure, but the Retain one in prod
    (platform / "models" / "slm-base.yaml").unlink()
    (platform / "endpoints" / "support-online.yaml").unlink()
    assert main([*up, "--timeout", "60"]) == 0, capsys.readouterr()
    assert fake.state.online_endpoint("support-online", azure_up.workspace) is None
    assert _model(azure_up, azure_up.workspace, "slm-base") is None
    assert _model(azure_up, PROD, "slm-base") is not None
    assert _model(azure_up, azure_up.workspace, "support-slm") is not None


def test_up_runs_the_fine_tuning_pipeline_in_azure_ml_and_serves_the_model_it_registers(
    azure_up: AzureEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = azure_up.fake
    for workspace in (azure_up.workspace, PROD):  # what Pulumi made (ComputeCluster objects)
        fake.jobs.add_compute("gpu-t4", workspace, "Standard_NC4as_T4_v3")
        fake.jobs.add_compute("gpu-a100", workspace, "Standard_NC24ads_A100_v4", max_nodes=2)
    platform = shutil.copytree(REPO / "manifests", tmp_path / "platform")
    state_dir = str(tmp_path / "state")
    up = ["up", str(platform), "--backend", "azureml", "--once", "--state-dir", state_dir]
    assert main([*up, "--timeout", "180"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "finetune-support-slm" in out and "Stalled" not in out

    jobs = {j["properties"]["tags"].get(TAG_PIPELINE): j for j in fake.jobs.jobs()}
    assert set(jobs) == {"finetune-support-slm", "finetune-support-chat"}
    job = jobs["finetune-support-slm"]
    props = job["properties"]
    assert props["status"] == "Completed"
    assert set(props["jobs"]) == {"prep", "finetune", "evaluate", "register"}
    children = fake.jobs.children(job["name"])
    assert {c["displayName"]: c["compute"]["target"] for c in children}["finetune"] == "gpu-a100"
    model = _model(azure_up, azure_up.workspace, "support-slm")
    assert isinstance(model, dict)
    tags = model["properties"]["tags"]
    assert tags[TAG_RUN] == job["name"] and tags[TAG_OWNER].startswith("amlops-up:")
    assert (
        model["properties"]["modelUri"] == f"azureml://jobs/{job['name']}/outputs/registered_model"
    )
    endpoint = fake.state.online_endpoint("support-online", azure_up.workspace)
    assert endpoint is not None and endpoint["properties"]["traffic"] == {"blue": 90, "green": 10}

    # the catalog's component and model went to Azure ML as written; its output registered
    chat = jobs["finetune-support-chat"]["properties"]
    assert chat["status"] == "Completed"
    assert chat["jobs"]["finetune"]["componentId"] == CATALOG_COMPONENT
    assert chat["inputs"]["base_model"]["uri"].startswith("azureml://registries/azureml/models/")
    tuned = _model(azure_up, azure_up.workspace, "support-chat-phi3")
    assert isinstance(tuned, dict) and tuned["properties"]["modelType"] == "mlflow_model"

    # nothing changed: the next pass submits nothing
    fake.log.reset()
    assert main([*up, "--timeout", "60"]) == 0, capsys.readouterr()
    assert fake.log.count("Jobs_CreateOrUpdate") == 0
