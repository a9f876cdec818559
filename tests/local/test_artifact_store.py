"""The content-addressed store and model versions: same files are a no-op, versions are
immutable, a changed file is a new version only when asked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amlops.backends.base import ModelVersionSpec
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.cas import ArtifactChangedError, ArtifactStore
from amlops.backends.local.models import VersionConflictError
from amlops.core.digest import tree_digest

from .conftest import WS


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _objects(store: ArtifactStore) -> int:
    return sum(len(files) for _, _, files in os.walk(store.root / "objects"))


def test_storing_the_same_tree_twice_copies_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cas")
    src = _tree(tmp_path / "model", {"model.json": "{}", "sub/vocab.txt": "a b"})
    first = store.put_tree(src)
    objects = _objects(store)
    assert store.put_tree(src) == first
    assert _objects(store) == objects == 2


def test_identical_files_are_stored_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cas")
    store.put_tree(_tree(tmp_path / "a", {"x.bin": "same"}))
    store.put_tree(_tree(tmp_path / "b", {"y.bin": "same"}))
    assert _objects(store) == 1


def test_digest_covers_names_and_content_but_not_caches(tmp_path: Path) -> None:
    src = _tree(tmp_path / "code", {"score.py": "def init(): pass\n"})
    before = tree_digest(src)
    _tree(src, {"__pycache__/score.cpython-311.pyc": "junk", ".DS_Store": "junk"})
    assert tree_digest(src) == before
    (src / "score.py").rename(src / "main.py")
    assert tree_digest(src) != before


def test_materialized_files_are_read_only_links(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cas")
    digest = store.put_tree(_tree(tmp_path / "m", {"model.json": "{}"}))
    store.materialize(digest, tmp_path / "out")
    target = tmp_path / "out" / "model.json"
    assert target.read_text() == "{}"
    assert not os.access(target, os.W_OK) or os.geteuid() == 0
    assert target.stat().st_mode & 0o222 == 0


def test_a_file_changed_while_stored_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "cas")
    src = _tree(tmp_path / "m", {"model.json": "{}"})
    real = ArtifactStore._put_object

    def edit_then_put(self: ArtifactStore, source: Path, sha: str) -> None:
        source.write_text('{"edited": true}')
        real(self, source, sha)

    monkeypatch.setattr(ArtifactStore, "_put_object", edit_then_put)
    with pytest.raises(ArtifactChangedError):
        store.put_tree(src)


def test_reregistering_identical_files_is_a_no_op(backend: LocalBackend, tmp_path: Path) -> None:
    src = _tree(tmp_path / "m", {"model.json": "{}"})
    first = backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", src))
    writes = backend.db.writes
    again = backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", src))
    assert again == first
    assert backend.db.writes == writes
    assert [v.version for v in backend.list_model_versions(WS, "m")] == ["1"]


def test_a_pinned_version_never_takes_other_files(backend: LocalBackend, tmp_path: Path) -> None:
    src = _tree(tmp_path / "m", {"model.json": "{}"})
    backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", src))
    (src / "model.json").write_text('{"v": 2}')
    with pytest.raises(VersionConflictError, match="immutable"):
        backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", src))
    created = backend.create_or_update_model_version(WS, ModelVersionSpec("m", "2", src))
    assert created.version == "2"


def test_unversioned_files_get_the_next_version_only_when_changed(
    backend: LocalBackend, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "m", {"model.json": "{}"})
    assert (
        backend.create_or_update_model_version(WS, ModelVersionSpec("m", None, src)).version == "1"
    )
    assert (
        backend.create_or_update_model_version(WS, ModelVersionSpec("m", None, src)).version == "1"
    )
    (src / "model.json").write_text('{"v": 2}')
    assert (
        backend.create_or_update_model_version(WS, ModelVersionSpec("m", None, src)).version == "2"
    )


def test_a_version_folder_is_laid_out_like_azure_ml(backend: LocalBackend, tmp_path: Path) -> None:
    src = _tree(tmp_path / "slm", {"model.json": "{}"})
    version = backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", src))
    # AZUREML_MODEL_DIR/<registered folder name>/<files>
    assert (Path(version.location) / "slm" / "model.json").read_text() == "{}"
