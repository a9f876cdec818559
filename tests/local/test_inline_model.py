"""A deployment that writes its model out (``model: {path: ./model}``) is served as Azure ML
serves it: the files are registered as a model version of their own first, changed files
become the next version, and an unchanged pass writes nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from amlops.backends.local.backend import LocalBackend
from amlops.core.locator import ObjectLocator
from amlops.core.manifests import load_tree
from amlops.core.validate import validate_paths
from amlops.kinds import endpoint, model
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import ObjectReport, TreeReconciler
from tests.local.conftest import SCORE
from tests.platform_text import workspace

pytestmark = pytest.mark.slow

_NOWHERE = ObjectLocator("Model ns/remote")

ENDPOINT = """\
apiVersion: amlops.io/v1alpha1
kind: Endpoint
metadata:
  name: echo
spec:
  workspace: mlw-dev
  endpoint:
    name: echo
    auth_mode: key
    traffic: {blue: 100}
  deployments:
    - name: blue
      model:
        path: ./model
      code_configuration:
        code: ./score
        scoring_script: score.py
      instance_type: Standard_DS3_v2
      instance_count: 1
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "model").mkdir(parents=True)
    (root / "score").mkdir()
    (root / "workspace.yaml").write_text(workspace())
    (root / "endpoint.yaml").write_text(ENDPOINT)
    (root / "score" / "score.py").write_text(textwrap.dedent(SCORE))
    (root / "model" / "answer.json").write_text(json.dumps({"answer": 1}))
    return root


def _converge(backend: LocalBackend, tree: Path) -> ObjectReport:
    """Passes until the endpoint settles: its last report."""
    manifests = load_tree([tree]).manifests
    reconciler = TreeReconciler(backend, backend.objects)
    for _ in range(200):
        report = next(r for r in reconciler.reconcile(manifests) if r.kind == "Endpoint")
        if report.settled:
            return report
    raise AssertionError(f"the endpoint did not settle: {report.outcome}")


def _versions(backend: LocalBackend) -> list[str]:
    return sorted(v.version for v in backend.list_model_versions("mlw-dev", "echo-blue"))


def test_validate_accepts_it(tree: Path) -> None:
    assert validate_paths([tree], sdk=False).errors == []


def test_validate_reports_what_up_could_not_register(tree: Path) -> None:
    endpoint = tree / "endpoint.yaml"
    endpoint.write_text(ENDPOINT.replace("path: ./model", "path: ./elsewhere"))
    found = [(f.rule, f.line) for f in validate_paths([tree], sdk=False).errors]
    assert found == [("ref.missing-file", 14)]
    endpoint.write_text(ENDPOINT.replace("path: ./model", "name: only-a-name"))
    found = [(f.rule, f.line) for f in validate_paths([tree], sdk=False).errors]
    assert found == [("spec.invalid", 13)]


def test_the_inline_model_is_registered_then_served(backend: LocalBackend, tree: Path) -> None:
    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.READY, report.outcome
    assert _versions(backend) == ["1"]
    result = backend.invoke("mlw-dev", "echo", b"{}")
    assert json.loads(result.body) == {"answer": 1}


def test_an_unchanged_pass_writes_nothing_and_changed_files_are_the_next_version(
    backend: LocalBackend, tree: Path
) -> None:
    _converge(backend, tree)
    before = backend.db.writes
    again = _converge(backend, tree)
    assert again.outcome.phase is Phase.READY
    assert backend.db.writes - before == 0
    assert _versions(backend) == ["1"]

    (tree / "model" / "answer.json").write_text(json.dumps({"answer": 2}))
    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.READY, report.outcome
    assert _versions(backend) == ["1", "2"]
    assert json.loads(backend.invoke("mlw-dev", "echo", b"{}").body) == {"answer": 2}


MODEL = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: remote
spec:
  workspace: mlw-dev
  model:
    name: remote
    version: "1"
    path: azureml://datastores/workspaceblobstore/paths/models/remote
"""


def test_a_model_in_a_datastore_is_refused_by_validate_as_up_refuses_it(tree: Path) -> None:
    # Azure ML registers from a datastore too; amlops registers the repository's files.
    (tree / "model.yaml").write_text(MODEL)
    remote = "path: azureml://datastores/workspaceblobstore/paths/models/echo"
    (tree / "endpoint.yaml").write_text(ENDPOINT.replace("path: ./model", remote))
    # (the azure-ai-ml loader refuses the deployment's too; the Model's it accepts)
    report = validate_paths([tree], sdk=False)
    found = [(Path(f.file).name, f.rule, f.line) for f in report.errors]
    assert found == [("endpoint.yaml", "spec.invalid", 14), ("model.yaml", "spec.invalid", 10)]

    spec, (finding,) = model.parse(load_tree([tree / "model.yaml"]).manifests[0].spec, _NOWHERE)
    assert spec is None and "registers a model from files in the repository" in finding.message
    (ep,) = load_tree([tree / "endpoint.yaml"]).manifests
    _, (finding,) = endpoint.parse(ep.spec, ep)
    assert (finding.field, finding.line) == ("spec.deployments[0].model.path", 14)


CATALOG_MODEL = "azureml://registries/azureml-meta/models/Llama-2-7b/versions/12"


def test_a_registry_model_validates_and_the_local_backend_refuses_it_naming_it(
    tree: Path, backend: LocalBackend
) -> None:
    """A deployment of a model-catalog model is valid Azure ML: validate accepts it and the
    endpoint stalls under `up` with the local backend's own reason, naming the model."""
    text = ENDPOINT.replace(
        "      model:\n        path: ./model\n", f"      model: {CATALOG_MODEL}\n"
    )
    (tree / "endpoint.yaml").write_text(text)
    assert validate_paths([tree], sdk=False).errors == []
    (manifest,) = [m for m in load_tree([tree]).manifests if m.kind == "Endpoint"]
    spec, findings = endpoint.parse(manifest.spec, _NOWHERE)
    assert findings == [] and spec is not None
    assert str(spec.deployments[0].model) == CATALOG_MODEL
    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.STALLED
    assert CATALOG_MODEL in report.outcome.message
    assert backend.list_deployments("mlw-dev", "echo") == []
