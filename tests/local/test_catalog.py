"""The SQLite catalog: atomic writes, counted writes, no write when nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from amlops.backends.base import ComputeInfo, ModelVersion
from amlops.backends.local.catalog import Catalog


def _version(name: str = "m", version: str = "1") -> ModelVersion:
    return ModelVersion("ws", name, version, "", "sha256:ab", "custom_model", "", {}, "t", "")


def test_a_failed_transaction_leaves_nothing_and_counts_no_write(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError), catalog.transaction() as tx:
        tx.insert_model_version(_version(), "models/m/1")
        raise RuntimeError("crash half-way")
    assert catalog.get_model_version("ws", "m", "1", tmp_path) is None
    assert catalog.writes == 0


def test_a_committed_write_is_visible_to_another_connection(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    with catalog.transaction() as tx:
        tx.insert_model_version(_version(), "models/m/1")
    other = sqlite3.connect(tmp_path / "c.sqlite")
    assert other.execute("SELECT version FROM model_versions").fetchall() == [("1",)]
    assert catalog.writes == 1


def test_unchanged_records_are_not_written(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    record = {
        "kind": "Model",
        "workspace": "ws",
        "name": "m",
        "generation": 1,
        "spec_hash": "x",
        "deletion_policy": "Delete",
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "b": 1, "a": 2},
    }
    assert catalog.put_object(record) is True
    assert catalog.put_object(dict(record)) is False
    catalog.put_compute(ComputeInfo("ws", "cpu", 2))
    catalog.put_compute(ComputeInfo("ws", "cpu", 2))
    catalog.set_meta("k", "v")
    catalog.set_meta("k", "v")
    assert catalog.writes == 3
    # the status keeps its key order (a run's steps are shown in the order they run)
    stored = catalog.get_object("Model", "ws", "m")
    assert stored is not None and list(stored["status"]) == ["conditions", "b", "a"]


def test_next_version_follows_the_highest_integer(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    for version in ("1", "7", "beta"):
        with catalog.transaction() as tx:
            tx.insert_model_version(_version(version=version), f"models/m/{version}")
    assert catalog.next_model_version("ws", "m") == "8"
    assert catalog.next_model_version("ws", "other") == "1"
