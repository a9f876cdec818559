"""The local driver's object store: what Kubernetes would keep for each object.

One record per object (kind, workspace, name, generation, spec hash, deletion policy and its
``.status``) and the run requests of ``amlops run``. It is the reconcile tree's ``StatusStore``
on a laptop, as the API server is in a cluster; the assets the objects made live in the asset
catalog (``catalog.py``), in the same SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from amlops.backends.local.db import Database


class ObjectStore:
    """Records keyed by (kind, workspace, name); writes only what changed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get_object(self, kind: str, workspace: str, name: str) -> dict[str, Any] | None:
        row = self.db.fetch_one(
            "SELECT * FROM objects WHERE kind = ? AND workspace = ? AND name = ?",
            (kind, workspace, name),
        )
        if row is None:
            return None
        data = dict(row)
        data["status"] = json.loads(data["status"])
        return data

    def list_objects(self) -> list[dict[str, Any]]:
        rows = self.db.fetch_all("SELECT * FROM objects ORDER BY kind, workspace, name")
        out = []
        for r in rows:
            data = dict(r)
            data["status"] = json.loads(data["status"])
            out.append(data)
        return out

    def put_object(self, record: Mapping[str, Any]) -> bool:
        """Store an object's record; False (and no write) when nothing changed."""
        current = self.get_object(record["kind"], record["workspace"], record["name"])
        if current is not None and current == dict(record):
            return False
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record["kind"],
                    record["workspace"],
                    record["name"],
                    record["generation"],
                    record["spec_hash"],
                    record["deletion_policy"],
                    # keys keep their order (a run's steps read top to bottom); equality of
                    # the decoded dicts, not of the text, decides whether to write
                    json.dumps(record["status"], separators=(",", ":")),
                ),
            )
        return True

    def delete_object(self, kind: str, workspace: str, name: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "DELETE FROM objects WHERE kind = ? AND workspace = ? AND name = ?",
                (kind, workspace, name),
            )
            tx.execute(
                "DELETE FROM requests WHERE kind = ? AND workspace = ? AND name = ?",
                (kind, workspace, name),
            )

    def request(self, kind: str, workspace: str, name: str, at: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)", (kind, workspace, name, at)
            )

    def get_request(self, kind: str, workspace: str, name: str) -> str | None:
        row = self.db.fetch_one(
            "SELECT requested_at FROM requests WHERE kind = ? AND workspace = ? AND name = ?",
            (kind, workspace, name),
        )
        return str(row["requested_at"]) if row else None
