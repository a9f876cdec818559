"""The harness itself: what a subprocess (the future backend's CLI) gets from ``azure_env``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.azure.conftest import AzureEnv
from tests.azure.fake_arm import FakeCredential, decode_jwt

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys, tempfile, pathlib
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Model
from tests.azure.fake_arm import FakeCredential
ml = MLClient(FakeCredential(), sys.argv[1], sys.argv[2], sys.argv[3])
folder = pathlib.Path(tempfile.mkdtemp()) / "m"
folder.mkdir()
(folder / "w.txt").write_text("w")
model = ml.models.create_or_update(Model(name="from-subprocess", path=str(folder)))
print("CLOUD", os.environ["AZUREML_CURRENT_CLOUD"])
print("MODEL", model.name, model.version)
"""


def test_subprocess_reaches_the_fake_through_arm_cloud_metadata_url(azure_env: AzureEnv) -> None:
    env = {**os.environ, **azure_env.env}
    env.pop("AZUREML_CURRENT_CLOUD")  # found through ARM_CLOUD_METADATA_URL alone
    env["PYTHONPATH"] = os.pathsep.join([azure_env.env["PYTHONPATH"], str(ROOT)])
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            azure_env.subscription_id,
            azure_env.resource_group,
            azure_env.workspace,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"CLOUD {azure_env.cloud_name}" in proc.stdout
    assert "MODEL from-subprocess 1" in proc.stdout
    fake = azure_env.fake
    assert fake.log.count("(CloudMetadata)") >= 1
    # the upload went to Azurite at {account}.blob.core.localhost (sitecustomize resolved it)
    assert fake.log.count("Datastores_ListSecrets") == 1
    assert fake.log.count("ModelVersions_CreateOrUpdate") == 1


def test_credential_tokens_carry_the_requested_audience() -> None:
    credential = FakeCredential()
    token = credential.get_token("https://127.0.0.1:1234/.default")
    claims = decode_jwt(token.token)
    assert claims["aud"] == "https://127.0.0.1:1234"
    assert claims["exp"] > claims["iat"]
    assert credential.requested_scopes == [("https://127.0.0.1:1234/.default",)]


def test_clock_and_reset(azure_env: AzureEnv) -> None:
    fake = azure_env.fake
    before = fake.clock.now()
    assert fake.clock.advance(5) == pytest.approx(before + 5)
    with pytest.raises(ValueError):
        fake.clock.advance(-1)
    fake.faults.inject("Workspaces_Get", 500)
    fake.reset()
    assert fake.faults.rules == [] and fake.log.records == []
    ws = fake.state.get(fake.state.workspace_id(fake.workspace))
    assert ws is not None and ws["properties"]["provisioningState"] == "Succeeded"
