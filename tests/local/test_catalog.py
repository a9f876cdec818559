"""The SQLite state file (asset catalog and object store): atomic writes, counted writes, no
write when nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from amlops.backends.base import ComputeInfo, ModelVersion
from amlops.backends.local.catalog import AssetCatalog, deployment_state
from amlops.backends.local.db import Database
from amlops.backends.local.objects import ObjectStore


def _version(name: str = "m", version: str = "1") -> ModelVersion:
    return ModelVersion("ws", name, version, "", "sha256:ab", "custom_model", "", {}, "t", "")


def test_a_failed_transaction_leaves_nothing_and_counts_no_write(tmp_path: Path) -> None:
    catalog = AssetCatalog(Database(tmp_path / "c.sqlite"))
    with pytest.raises(RuntimeError), catalog.transaction() as tx:
        catalog.insert_model_version(tx, _version(), "models/m/1")
        raise RuntimeError("crash half-way")
    assert catalog.get_model_version("ws", "m", "1", tmp_path) is None
    assert catalog.db.writes == 0


def test_a_committed_write_is_visible_to_another_connection(tmp_path: Path) -> None:
    catalog = AssetCatalog(Database(tmp_path / "c.sqlite"))
    with catalog.transaction() as tx:
        catalog.insert_model_version(tx, _version(), "models/m/1")
    other = sqlite3.connect(tmp_path / "c.sqlite")
    assert other.execute("SELECT version FROM model_versions").fetchall() == [("1",)]
    assert catalog.db.writes == 1


def test_unchanged_records_are_not_written(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.sqlite")
    objects, catalog = ObjectStore(db), AssetCatalog(db)
    record = {
        "kind": "Model",
        "workspace": "ws",
        "name": "m",
        "generation": 1,
        "spec_hash": "x",
        "deletion_policy": "Delete",
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "b": 1, "a": 2},
    }
    assert objects.put_object(record) is True
    assert objects.put_object(dict(record)) is False
    catalog.put_compute(ComputeInfo("ws", "cpu", 2))
    catalog.put_compute(ComputeInfo("ws", "cpu", 2))
    db.set_meta("k", "v")
    db.set_meta("k", "v")
    assert db.writes == 3
    # the status keeps its key order (a run's steps are shown in the order they run)
    stored = objects.get_object("Model", "ws", "m")
    assert stored is not None and list(stored["status"]) == ["conditions", "b", "a"]


def test_next_version_follows_the_highest_integer(tmp_path: Path) -> None:
    catalog = AssetCatalog(Database(tmp_path / "c.sqlite"))
    for version in ("1", "7", "beta"):
        with catalog.transaction() as tx:
            catalog.insert_model_version(tx, _version(version=version), f"models/m/{version}")
    assert catalog.next_model_version("ws", "m") == "8"
    assert catalog.next_model_version("ws", "other") == "1"


# the endpoints and deployments tables as schema 1 made them, before they had tags
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE endpoints (
    workspace TEXT NOT NULL, name TEXT NOT NULL, auth_mode TEXT NOT NULL,
    port INTEGER NOT NULL, traffic TEXT NOT NULL, mirror_traffic TEXT NOT NULL,
    description TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (workspace, name));
CREATE TABLE deployments (
    workspace TEXT NOT NULL, endpoint TEXT NOT NULL, name TEXT NOT NULL,
    model TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL, port INTEGER NOT NULL, log TEXT NOT NULL,
    PRIMARY KEY (workspace, endpoint, name));
INSERT INTO endpoints VALUES ('ws', 'ep', 'key', 5001, '{"blue":100}', '{}', '', '');
INSERT INTO deployments VALUES ('ws', 'ep', 'blue', 'm:1', 'fp', 'Stopped', '', 0, 'l');
"""


def test_a_state_directory_from_before_tags_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_1)
    old.close()

    catalog = AssetCatalog(Database(path))
    assert catalog.db.writes == 0
    assert catalog.db.get_meta("schema_version") == "2"
    endpoint = catalog.get_endpoint_row("ws", "ep")
    assert endpoint is not None and endpoint["tags"] == {} and endpoint["traffic"] == {"blue": 100}
    [deployment] = catalog.list_deployment_rows("ws", "ep")
    assert deployment_state(deployment).tags == {}

    # what an older amlops left is untouched (no write) until tags are given
    catalog.put_deployment_row({k: v for k, v in deployment.items() if k != "tags"})
    assert catalog.db.writes == 0
    tags = {"amlops-commit": "abc", "amlops-manifest": "manifests/ep.yaml"}
    catalog.put_endpoint_row({**endpoint, "tags": tags})
    catalog.put_deployment_row({**deployment, "tags": tags})
    assert catalog.db.writes == 2
    catalog.db.close()

    again = AssetCatalog(Database(path))  # opening a migrated catalog changes nothing
    assert again.get_endpoint_row("ws", "ep") == {**endpoint, "tags": tags}
    assert deployment_state(again.list_deployment_rows("ws", "ep")[0]).tags == tags
    again.db.close()
