"""What every backend must do, as the reconcilers rely on it (amlops.backends.base)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops.backends.base import (
    Backend,
    BackendError,
    EndpointSpec,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.core.digest import tree_digest
from tests.conformance.conftest import WS

pytestmark = pytest.mark.slow


def _files(tmp_path: Path, content: bytes = b"weights") -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes(content)
    return folder


def test_registering_the_same_files_again_is_a_no_op(backend: Backend, tmp_path: Path) -> None:
    folder = _files(tmp_path)
    first = backend.create_or_update_model_version(WS, ModelVersionSpec("m", None, folder))
    again = backend.create_or_update_model_version(WS, ModelVersionSpec("m", None, folder))
    assert (first.version, again.version) == (again.version, first.version)
    assert first.digest == again.digest == tree_digest(folder)
    assert first.asset_id == again.asset_id


def test_changed_files_get_the_next_version_unless_pinned(backend: Backend, tmp_path: Path) -> None:
    folder = _files(tmp_path)
    pinned = backend.create_or_update_model_version(WS, ModelVersionSpec("p", "7", folder))
    assert pinned.version == "7"
    unpinned = backend.create_or_update_model_version(WS, ModelVersionSpec("u", None, folder))
    _files(tmp_path, b"retrained")
    with pytest.raises(BackendError, match="p:7"):
        backend.create_or_update_model_version(WS, ModelVersionSpec("p", "7", folder))
    nxt = backend.create_or_update_model_version(WS, ModelVersionSpec("u", None, folder))
    assert int(nxt.version) == int(unpinned.version) + 1
    latest = backend.latest_model_version(WS, "u")
    assert latest is not None and latest.version == nxt.version


def test_a_deleted_version_is_gone_and_deleting_again_is_fine(
    backend: Backend, tmp_path: Path
) -> None:
    backend.create_or_update_model_version(WS, ModelVersionSpec("d", "1", _files(tmp_path)))
    assert backend.get_model_version(WS, "d", "1") is not None
    backend.delete_model_version(WS, "d", "1")
    assert backend.get_model_version(WS, "d", "1") is None
    backend.delete_model_version(WS, "d", "1")
    assert backend.get_model_version(WS, "nothing", "1") is None
    assert backend.latest_model_version(WS, "nothing") is None


def test_an_endpoint_is_created_read_back_keyed_and_deleted(backend: Backend) -> None:
    spec = EndpointSpec(WS, "ep-conf", "key", {}, tags={"team": "ml"})
    backend.create_or_update_endpoint(spec)
    state = backend.get_endpoint(WS, "ep-conf")
    assert state is not None
    assert state.auth_mode == "key" and dict(state.traffic) == {}
    assert state.tags["team"] == "ml"
    assert state.provisioning_state in (
        ProvisioningState.CREATING,
        ProvisioningState.UPDATING,
        ProvisioningState.SUCCEEDED,
    )
    assert backend.list_deployments(WS, "ep-conf") == []
    keys = backend.get_endpoint_keys(WS, "ep-conf")
    assert keys.primary and keys.secondary and keys.primary != keys.secondary
    assert keys.primary not in repr(keys)
    backend.delete_endpoint(WS, "ep-conf")
    assert backend.get_endpoint(WS, "ep-conf") is None
    backend.delete_endpoint(WS, "ep-conf")
    assert backend.get_endpoint(WS, "nowhere") is None
