"""Pipeline steps and scoring servers see a clean environment plus what their spec sets, as in
Azure ML: never the credentials in the shell that runs `amlops up`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from amlops.backends.base import (
    BackendError,
    DeploymentSpec,
    EndpointSpec,
    JobStatus,
    ModelRef,
    ModelVersionSpec,
    PipelineRunSpec,
    ProvisioningState,
)
from amlops.backends.local.backend import LocalBackend

from .conftest import ROOT, WS, script

pytestmark = pytest.mark.slow

SECRET = "AZURE_CLIENT_SECRET"

ENV_STEP = """
    import json, os, pathlib, sys
    pathlib.Path(sys.argv[1], "env.json").write_text(json.dumps(dict(os.environ)))
"""

ENV_SCORE = """
    import json, os

    def init():
        pass

    def run(raw_data):
        return dict(os.environ)
"""


@pytest.fixture(autouse=True)
def _credentials_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, "s3cr3t")
    monkeypatch.setenv("AZURE_ACCESS_TOKEN", "t0k3n")


def test_a_step_sees_its_environment_variables_but_not_the_shells_credentials(
    backend: LocalBackend, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    script(code, "env_step.py", ENV_STEP)
    job = {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "jobs": {
            "dump": {
                "type": "command",
                "code": str(code),
                "command": "python env_step.py ${{outputs.out}}",
                "environment_variables": {"STEP_SETTING": "on"},
                "outputs": {"out": {"type": "uri_folder"}},
            }
        },
    }
    run = backend.submit_pipeline_run(PipelineRunSpec(WS, "p", job, "fp", "change"))
    done = backend.wait_for_run(run.run_id, timeout=60)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    (dumped,) = (backend.root / "runs" / run.run_id / "dump").rglob("env.json")
    env = json.loads(dumped.read_text())
    assert SECRET not in env and "AZURE_ACCESS_TOKEN" not in env
    assert env["STEP_SETTING"] == "on"
    assert env["AZUREML_RUN_ID"] == f"{run.run_id}_dump" and "AZURE_ML_OUTPUT_out" in env
    assert "PATH" in env and "HOME" in env


def test_a_scoring_server_sees_its_environment_variables_but_not_the_shells_credentials(
    backend: LocalBackend, tmp_path: Path
) -> None:
    model = backend.create_or_update_model_version(
        WS, ModelVersionSpec("slm-base", "1", ROOT / "manifests" / "assets" / "slm-base")
    )
    backend.create_or_update_endpoint(EndpointSpec(WS, "e", "key", {"d": 100}))
    code = tmp_path / "score"
    script(code, "score.py", ENV_SCORE)
    spec = DeploymentSpec(
        WS,
        "e",
        "d",
        ModelRef(model.name, model.version),
        code,
        "score.py",
        "fp",
        environment_variables={"DEPLOYMENT_SETTING": "on"},
    )
    backend.create_or_update_deployment(spec)
    deadline = time.monotonic() + 60
    (state,) = backend.list_deployments(WS, "e")
    while state.provisioning_state is ProvisioningState.CREATING and time.monotonic() < deadline:
        time.sleep(0.2)
        (state,) = backend.list_deployments(WS, "e")
    assert state.provisioning_state is ProvisioningState.SUCCEEDED, state.message
    answer = backend.invoke(WS, "e", b"{}")
    assert answer.status == 200, answer.body
    env = json.loads(answer.body)
    assert SECRET not in env and "AZURE_ACCESS_TOKEN" not in env
    assert env["DEPLOYMENT_SETTING"] == "on"
    assert env["AZUREML_MODEL_DIR"] == model.location


def test_a_deployment_without_code_is_refused_by_the_local_backend_saying_why(
    backend: LocalBackend,
) -> None:
    """Azure ML serves an MLflow model without code; the local backend has no MLflow server,
    so it refuses with a message of its own rather than failing somewhere inside."""
    backend.create_or_update_model_version(
        WS, ModelVersionSpec("slm-base", "1", ROOT / "manifests" / "assets" / "slm-base")
    )
    backend.create_or_update_endpoint(EndpointSpec(WS, "e", "key", {"d": 100}))
    spec = DeploymentSpec(WS, "e", "d", ModelRef("slm-base", "1"), None, "score.py", "fp")
    with pytest.raises(BackendError, match="code_configuration"):
        backend.create_or_update_deployment(spec)
    assert backend.list_deployments(WS, "e") == []
