"""The azureml backend under faults: retries, deadlines, secrets, console noise, pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops.backends.azureml.calls import AzureTimeoutError, AzureTransientError
from amlops.backends.base import BackendError, ModelVersionSpec, PipelineRunSpec
from amlops.core.manifests import load_tree
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler
from tests.azure.backend_support import (
    WS,
    MemoryStore,
    converge,
    make_backend,
    model_dir,
    report,
    write_tree,
)
from tests.azure.conftest import AzureEnv

pytestmark = pytest.mark.slow

SAS = "?sv=2024-08-04&se=2030-01-01&sr=c&sp=rw&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
ACCOUNT_KEY = "AccountKey=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


def test_429_is_retried_after_its_retry_after(azure_env: AzureEnv, tmp_path: Path) -> None:
    fake = azure_env.fake
    backend = make_backend(azure_env)
    backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", model_dir(tmp_path)))
    fake.log.reset()
    fake.faults.inject("ModelVersions_Get", 429, retry_after=1, times=1)
    found = make_backend(azure_env).get_model_version(WS, "m", "1")  # no cached read
    assert found is not None and found.version == "1"
    gets = fake.log.find("ModelVersions_Get")
    assert [r.status for r in gets] == [429, 200]
    assert gets[1].monotonic - gets[0].monotonic >= 1.0


def test_persistent_5xx_is_transient_and_the_object_retries(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    backend = make_backend(azure_env, retry_total=1, retry_backoff_factor=0.01)
    fake.faults.inject(r".*/onlineEndpoints/ep-main$", 503, retry_after=0, times=None, method="GET")
    with pytest.raises(AzureTransientError):
        backend.get_endpoint(WS, "ep-main")
    assert fake.log.count("OnlineEndpoints_Get", status=503) == 2  # one try + one retry

    tree = write_tree(tmp_path / "tree")
    reports = TreeReconciler(backend, MemoryStore(), backend.learn).reconcile(
        load_tree([tree], root=tree).manifests
    )
    endpoint = report(reports, "Endpoint", "ep-main")
    assert endpoint.outcome.phase is Phase.RECONCILING
    assert endpoint.outcome.reason == "RetryingAfterError"
    assert endpoint.requeue_after


def test_secrets_in_azure_errors_do_not_reach_conditions(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    fake = azure_env.fake
    backend = make_backend(azure_env)
    tree = write_tree(tmp_path / "tree")
    manifests = load_tree([tree], root=tree).manifests
    reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)
    converge(reconciler, manifests, fake.clock)
    keys = backend.get_endpoint_keys(WS, "ep-main")
    blob = f"https://acct.blob.core.windows.net/c/model.bin{SAS}"
    fake.faults.inject(
        "OnlineEndpoints_CreateOrUpdate",
        400,
        times=None,
        code="BadRequest",
        message=(
            f"cannot read {blob} ({ACCOUNT_KEY}); key {keys.primary} "
            "Bearer eyJhbGciOi.eyJzdWIiOi.sig"
        ),
    )
    fake.state.set_traffic("ep-main", {"blue": 100}, azure_env.workspace)  # drift: a write
    endpoint = report(reconciler.reconcile(manifests), "Endpoint", "ep-main")
    assert endpoint.outcome.phase is Phase.STALLED
    message = endpoint.outcome.message
    assert "cannot read https://acct.blob.core.windows.net/c/model.bin" in message
    for secret in ("sig=", "sv=", "c2VjcmV0", "QUJDREVG", keys.primary, "eyJhbGciOi"):
        assert secret not in message, message
    assert "\n" not in message


def test_an_upload_that_hangs_is_given_up_at_its_deadline(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    backend = make_backend(azure_env, upload_timeout_s=1.0)
    azure_env.fake.faults.inject("ModelVersions_CreateOrUpdate", None, delay=3.0)
    with pytest.raises(AzureTimeoutError, match="register model slow:1"):
        backend.create_or_update_model_version(
            WS, ModelVersionSpec("slow", "1", model_dir(tmp_path))
        )


def test_the_sdk_prints_nothing(
    azure_env: AzureEnv, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    backend = make_backend(azure_env)
    tree = write_tree(tmp_path / "tree")
    reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)
    converge(reconciler, load_tree([tree], root=tree).manifests, azure_env.fake.clock)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_a_job_the_sdk_cannot_load_is_refused_naming_the_pipeline(azure_env: AzureEnv) -> None:
    backend = make_backend(azure_env)
    job = {"type": "pipeline", "jobs": {"a": {"type": "no-such-step-type"}}}
    with pytest.raises(BackendError, match="pipeline train"):
        backend.submit_pipeline_run(PipelineRunSpec(WS, "train", job, "sha256:0", "change"))
    assert azure_env.fake.log.find(method="PUT", path_contains="/jobs/") == []


def test_a_workspace_without_coordinates_is_named(azure_env: AzureEnv) -> None:
    backend = make_backend(azure_env)
    with pytest.raises(BackendError, match=r"workspace elsewhere.*AMLOPS_AZURE_SUBSCRIPTION_ID"):
        backend.get_endpoint("elsewhere", "ep")
