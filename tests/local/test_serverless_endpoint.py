"""A ServerlessEndpoint on the local backend: a catalog model shared into a local registry is
served like an online deployment (its own score.py, keys checked by the router); a catalog
model that is not is refused, naming it; an endpoint deleted behind amlops's back comes back."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from amlops.backends.base import ModelVersionSpec
from amlops.backends.local.backend import LocalBackend
from amlops.cli import main
from amlops.core.manifests import load_tree
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import ObjectReport, TreeReconciler
from tests.local.conftest import SCORE, amlops
from tests.platform_text import workspace

pytestmark = pytest.mark.slow

MODEL_ID = "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct"

SERVERLESS = f"""\
apiVersion: amlops.io/v1alpha1
kind: ServerlessEndpoint
metadata:
  name: llama
spec:
  workspace: mlw-dev
  endpoint:
    name: llama-chat
    model_id: {MODEL_ID}
    auth_mode: key
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "workspace.yaml").write_text(workspace())
    (root / "serverless.yaml").write_text(SERVERLESS)
    return root


def _register(backend: LocalBackend, tmp_path: Path, answer: int = 1) -> None:
    """A model version whose files carry their own score.py, in workspace mlw-dev."""
    folder = tmp_path / "llama"
    folder.mkdir(exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(SCORE))
    (folder / "answer.json").write_text(json.dumps({"answer": answer}))
    backend.create_or_update_model_version(
        "mlw-dev", ModelVersionSpec("Meta-Llama-3-8B-Instruct", "3", folder)
    )


def _converge(backend: LocalBackend, tree: Path) -> ObjectReport:
    manifests = load_tree([tree]).manifests
    reconciler = TreeReconciler(backend, backend.objects)
    for _ in range(200):
        report = next(r for r in reconciler.reconcile(manifests) if r.kind == "ServerlessEndpoint")
        if report.settled:
            return report
    raise AssertionError(f"the serverless endpoint did not settle: {report.outcome}")


def test_a_catalog_model_not_in_the_local_registry_is_refused_naming_it(
    backend: LocalBackend, tree: Path
) -> None:
    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.STALLED
    assert report.outcome.reason == "UnsupportedByBackend"
    assert f"model {MODEL_ID} is in" in report.outcome.message
    assert "cannot have it offline" in report.outcome.message
    assert "amlops registry share" in report.outcome.message
    assert backend.get_serverless_endpoint("mlw-dev", "llama-chat") is None


def test_a_shared_model_is_served_with_keys_and_a_subscription(
    backend: LocalBackend, tree: Path, tmp_path: Path
) -> None:
    _register(backend, tmp_path)
    shared = backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")
    assert str(shared.ref) == f"{MODEL_ID}/versions/3"
    assert Path(shared.location).is_relative_to(tmp_path / "state" / "registries" / "azureml-meta")

    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.READY, report.outcome
    assert report.outcome.reason == "Serving"
    assert report.status["modelId"] == MODEL_ID
    assert report.status["marketplaceSubscription"] == "meta-llama-3-8b-instruct"
    sub = backend.get_marketplace_subscription("mlw-dev", "meta-llama-3-8b-instruct")
    assert sub is not None and sub.model_id.endswith("/models/Meta-Llama-3-8B-Instruct")
    assert json.loads(backend.invoke("mlw-dev", "llama-chat", b"{}").body) == {"answer": 1}
    keys = backend.get_serverless_endpoint_keys("mlw-dev", "llama-chat")
    assert keys.primary and keys.primary != keys.secondary

    before = backend.db.writes
    assert _converge(backend, tree).outcome.phase is Phase.READY
    assert backend.db.writes == before  # an unchanged pass writes nothing


def test_a_shared_model_without_its_own_score_py_is_refused_naming_it(
    backend: LocalBackend, tree: Path, tmp_path: Path
) -> None:
    _register(backend, tmp_path)
    (tmp_path / "llama" / "score.py").unlink()
    backend.create_or_update_model_version(
        "mlw-dev", ModelVersionSpec("Meta-Llama-3-8B-Instruct", "4", tmp_path / "llama")
    )
    backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "4", "azureml-meta")
    report = _converge(backend, tree)  # the highest shared version: 4, without score.py
    assert (report.outcome.phase, report.outcome.reason) == (Phase.STALLED, "BackendRefused")
    assert f"model {MODEL_ID}/versions/4 has no score.py" in report.outcome.message


def test_an_endpoint_deleted_behind_the_back_is_put_back(
    backend: LocalBackend, tree: Path, tmp_path: Path
) -> None:
    _register(backend, tmp_path)
    backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")
    assert _converge(backend, tree).outcome.phase is Phase.READY
    backend.delete_serverless_endpoint("mlw-dev", "llama-chat")
    assert backend.get_serverless_endpoint("mlw-dev", "llama-chat") is None
    report = _converge(backend, tree)
    assert report.outcome.phase is Phase.READY, report.outcome
    assert json.loads(backend.invoke("mlw-dev", "llama-chat", b"{}").body) == {"answer": 1}


def test_a_shared_version_is_immutable(backend: LocalBackend, tmp_path: Path) -> None:
    _register(backend, tmp_path)
    first = backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")
    again = backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")
    assert again.digest == first.digest
    (Path(first.location) / "llama" / "answer.json").chmod(0o600)
    (Path(first.location) / "llama" / "answer.json").write_text("{}")
    with pytest.raises(Exception, match="already in registry azureml-meta with other files"):
        backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")


def test_registry_share_command(backend: LocalBackend, tmp_path: Path) -> None:
    _register(backend, tmp_path)
    backend.close()
    state = str(tmp_path / "state")
    ok = amlops(
        "registry",
        "share",
        "mlw-dev/Meta-Llama-3-8B-Instruct:3",
        "--registry",
        "azureml-meta",
        "--state-dir",
        state,
        cwd=tmp_path,
        check=0,
    )
    assert ok.stdout.strip() == f"shared {MODEL_ID}/versions/3"
    missing = amlops(
        "registry",
        "share",
        "mlw-dev/nothing:1",
        "--registry",
        "azureml-meta",
        "--state-dir",
        state,
        cwd=tmp_path,
        check=1,
    )
    assert "model nothing:1 is not registered in workspace mlw-dev" in missing.stderr
    amlops(
        "registry",
        "share",
        "nothing",
        "--registry",
        "r",
        "--state-dir",
        state,
        cwd=tmp_path,
        check=2,
    )


def test_amlops_invoke_scores_a_serverless_endpoint(
    backend: LocalBackend, tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`amlops invoke NAME` finds a ServerlessEndpoint as it finds an Endpoint."""
    _register(backend, tmp_path, answer=7)
    backend.share_model("mlw-dev", "Meta-Llama-3-8B-Instruct", "3", "azureml-meta")
    assert _converge(backend, tree).outcome.phase is Phase.READY
    request = tmp_path / "request.json"
    request.write_text("{}")
    state = str(tmp_path / "state")
    assert main(["invoke", "llama", "--data", str(request), "--state-dir", state]) == 0
    assert json.loads(capsys.readouterr().out) == {"answer": 7}
    assert main(["invoke", "nothing", "--data", str(request), "--state-dir", state]) == 2
