"""The azureml backend bound to the fake cloud, for tests/azure/test_backend_*.py and bench."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amlops.backends.azureml import AzureMLBackend, AzureSettings
from amlops.core.manifests import Manifest
from amlops.reconcile.tree import ObjectReport, TreeReconciler
from tests.azure.conftest import AzureEnv
from tests.azure.fake_arm.clock import Clock

WS = "dev"  # the amlops workspace name; mapped to the fake's workspace
OWNER = "amlops-tests"


def settings(azure_env: AzureEnv, **overrides: Any) -> AzureSettings:
    mapping = {
        WS: {
            "subscription": azure_env.subscription_id,
            "resourceGroup": azure_env.resource_group,
            "name": azure_env.workspace,
        }
    }
    values: dict[str, Any] = {"workspaces": mapping, "upload_timeout_s": 60.0, **overrides}
    return AzureSettings(**values)


def make_backend(
    azure_env: AzureEnv, owner: str = OWNER, source_root: Path | None = None, **overrides: Any
) -> AzureMLBackend:
    return AzureMLBackend(
        settings(azure_env, **overrides),
        owner=owner,
        source_root=source_root,
        credential=azure_env.credential,
        client_kwargs={"cloud": azure_env.cloud_name, "cloud_metadata": azure_env.cloud_metadata},
    )


def stored_model(azure_env: AzureEnv, name: str, version: str) -> dict[str, Any] | None:
    """The model version as the fake cloud holds it (None: not registered)."""
    state = azure_env.fake.state
    return state.get(state.resource_id(azure_env.workspace, "models", name, "versions", version))


def model_dir(tmp_path: Path, name: str = "model", content: bytes = b"weights") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(content)
    (folder / "MLmodel").write_text("flavors: {}\n")
    return folder


def link_outside(tmp_path: Path, link: Path) -> None:
    """Make ``link`` point at a file outside the repository (``tmp_path/outside.txt``)."""
    secret = tmp_path / "outside.txt"
    secret.write_text("not for Azure")
    link.symlink_to(secret)


def code_dir(tmp_path: Path, name: str = "code") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    return folder


class MemoryStore:
    """The reconcile tree's StatusStore in memory (``amlops up`` keeps it in the state dir)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get_object(self, kind: str, workspace: str, name: str) -> dict[str, Any] | None:
        found = self.records.get((kind, workspace, name))
        return dict(found) if found is not None else None

    def put_object(self, record: Mapping[str, Any]) -> bool:
        key = (record["kind"], record["workspace"], record["name"])
        if self.records.get(key) == dict(record):
            return False
        self.records[key] = dict(record)
        return True

    def list_objects(self) -> list[dict[str, Any]]:
        return [dict(r) for _, r in sorted(self.records.items())]

    def delete_object(self, kind: str, workspace: str, name: str) -> None:
        self.records.pop((kind, workspace, name), None)

    def get_request(self, kind: str, workspace: str, name: str) -> str | None:
        return None


MODEL = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  workspace: dev
  deletionPolicy: {policy}
  model:
    name: {name}
{version}    path: ./files/{name}
"""

ENDPOINT = """\
apiVersion: amlops.io/v1alpha1
kind: Endpoint
metadata:
  name: {name}
spec:
  workspace: dev
  deletionPolicy: {policy}
  endpoint:
    name: {name}
    auth_mode: key
    {split}
  deployments:
    - name: blue
      model: azureml:served:1
      code_configuration: {{code: ./score, scoring_script: score.py}}
      environment: azureml:serving-env:1
      instance_type: Standard_DS3_v2
      instance_count: 1
    - name: green
      model: azureml:base:1
      code_configuration: {{code: ./score, scoring_script: score.py}}
      environment:
        image: mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest
        conda_file: ./conda.yml
      environment_variables: {{MODE: green}}
      instance_type: Standard_DS3_v2
      instance_count: 2
"""


def write_tree(
    root: Path,
    endpoint: str = "ep-main",
    policy: str = "Delete",
    split: str = "traffic: {blue: 90, green: 10}",
) -> Path:
    """Two models (``served`` and ``base``, version 1) and an endpoint serving them 90/10."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("served", "base"):
        model_dir(root / "files", name, f"{name} weights".encode())
        (root / f"model-{name}.yaml").write_text(
            MODEL.format(name=name, policy=policy, version='    version: "1"\n')
        )
    code_dir(root, "score")
    (root / "conda.yml").write_text("name: serve\ndependencies:\n  - python=3.10\n")
    (root / "endpoint.yaml").write_text(ENDPOINT.format(name=endpoint, policy=policy, split=split))
    return root


def converge(
    reconciler: TreeReconciler,
    manifests: Sequence[Manifest],
    clock: Clock,
    passes: int = 20,
    step_s: float = 30.0,
) -> list[ObjectReport]:
    """Passes until everything settles, the fake's clock moving ``step_s`` between passes."""
    reports: list[ObjectReport] = []
    for _ in range(passes):
        reports = reconciler.reconcile(manifests)
        if all(r.settled for r in reports):
            return reports
        clock.advance(step_s)
    raise AssertionError(f"not settled: {[(r.name, r.outcome) for r in reports]}")


def report(reports: Sequence[ObjectReport], kind: str, name: str) -> ObjectReport:
    return next(r for r in reports if r.kind == kind and r.name == name)


REPO = Path(__file__).resolve().parents[2]
# The model the example pipeline would make, as a Model: the endpoint is served without a run.
SUPPORT_SLM = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: support-slm
spec:
  workspace: mlw-platform-dev
  model:
    name: support-slm
    version: "1"
    path: ../assets/slm-base
"""


def example_platform(copy: Path) -> Path:
    """manifests/ copied to ``copy`` without its pipeline, the model it would make a Model."""
    shutil.copytree(REPO / "manifests", copy)
    shutil.rmtree(copy / "pipelines")
    (copy / "models" / "support-slm.yaml").write_text(SUPPORT_SLM)
    return copy
