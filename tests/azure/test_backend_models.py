"""The azureml backend's model versions: content digests, immutable versions, deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops.backends.azureml.backend import TAG_DIGEST
from amlops.backends.base import TAG_OWNER, BackendError, ModelVersionSpec
from amlops.core.digest import tree_digest
from tests.azure.backend_support import WS, link_outside, make_backend, model_dir, stored_model
from tests.azure.conftest import AzureEnv

pytestmark = pytest.mark.slow


def test_a_pinned_version_is_registered_once_and_then_left_alone(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    folder = model_dir(tmp_path)
    spec = ModelVersionSpec("base", "1", folder, tags={"team": "ml"})
    first = backend.create_or_update_model_version(WS, spec)
    assert (first.name, first.version) == ("base", "1")
    assert first.digest == tree_digest(folder)
    stored = stored_model(azure_env, "base", "1")
    assert stored is not None
    tags = stored["properties"]["tags"]
    assert tags[TAG_DIGEST] == tree_digest(folder)
    assert tags[TAG_OWNER] == "amlops-tests" and tags["team"] == "ml"

    azure_env.fake.log.reset()
    again = make_backend(azure_env).create_or_update_model_version(WS, spec)  # a new process
    assert again.asset_id == first.asset_id
    assert azure_env.fake.log.writes == 0


def test_a_pinned_version_with_other_files_is_refused_by_name(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    folder = model_dir(tmp_path)
    backend.create_or_update_model_version(WS, ModelVersionSpec("base", "3", folder))
    (folder / "weights.bin").write_bytes(b"retrained")
    azure_env.fake.log.reset()
    with pytest.raises(BackendError) as info:
        backend.create_or_update_model_version(WS, ModelVersionSpec("base", "3", folder))
    assert "base:3" in str(info.value)
    assert azure_env.fake.log.writes == 0


def test_an_unpinned_model_gets_the_next_version_only_when_its_files_change(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    folder = model_dir(tmp_path)
    spec = ModelVersionSpec("served", None, folder)
    assert backend.create_or_update_model_version(WS, spec).version == "1"
    assert backend.create_or_update_model_version(WS, spec).version == "1"
    (folder / "weights.bin").write_bytes(b"retrained")
    second = backend.create_or_update_model_version(WS, spec)
    assert second.version == "2" and second.digest == tree_digest(folder)
    latest = backend.latest_model_version(WS, "served")
    assert latest is not None and latest.version == "2"
    # this model's writes (an upload another test gave up on may still land in this fake)
    creates = azure_env.fake.log.find("ModelVersions_CreateOrUpdate", path_contains="/served/")
    assert len(creates) == 2


def test_delete_removes_the_version_through_the_rest_api(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    backend = make_backend(azure_env)
    backend.create_or_update_model_version(WS, ModelVersionSpec("gone", "1", model_dir(tmp_path)))
    backend.delete_model_version(WS, "gone", "1")
    assert stored_model(azure_env, "gone", "1") is None
    assert azure_env.fake.log.count("ModelVersions_Delete") == 1
    assert backend.get_model_version(WS, "gone", "1") is None
    backend.delete_model_version(WS, "gone", "1")  # idempotent
    assert azure_env.fake.log.count("ModelVersions_Delete") == 1


def test_models_of_another_owner_are_never_changed_or_deleted(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    theirs = make_backend(azure_env, owner="another-cluster")
    folder = model_dir(tmp_path)
    theirs.create_or_update_model_version(WS, ModelVersionSpec("shared", "1", folder))
    ours = make_backend(azure_env)
    azure_env.fake.log.reset()
    for attempt in (
        lambda: ours.delete_model_version(WS, "shared", "1"),
        lambda: ours.create_or_update_model_version(WS, ModelVersionSpec("shared", "1", folder)),
        lambda: ours.create_or_update_model_version(
            WS, ModelVersionSpec("shared", None, model_dir(tmp_path, "other", b"x"))
        ),
    ):
        with pytest.raises(BackendError) as info:
            attempt()
        assert "another-cluster" in str(info.value)
    assert azure_env.fake.log.writes == 0
    assert stored_model(azure_env, "shared", "1") is not None


def test_a_link_out_of_the_repository_is_never_uploaded(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    folder = model_dir(repo)
    link_outside(tmp_path, folder / "extra.txt")
    backend = make_backend(azure_env, source_root=repo)
    with pytest.raises(BackendError, match="outside"):
        backend.create_or_update_model_version(WS, ModelVersionSpec("leak", "1", folder))
    assert azure_env.fake.log.writes == 0
