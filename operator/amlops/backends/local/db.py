"""The state directory's SQLite file: one connection, its transactions, its schema.

The asset catalog (``catalog.py``) and the object store (``objects.py``) share this one
connection, so one ``writes`` counter covers both. Every change runs in one ``BEGIN IMMEDIATE``
transaction, so a crash leaves either all of a change or none of it (a model version is never
half registered), and ``writes`` counts committed write transactions so a no-op reconcile pass
can be shown to write nothing. WAL mode lets ``amlops status`` read while ``amlops up`` writes.

What SQLite says about the file itself (not a database, a damaged page, a read-only folder)
becomes a ``StateError`` naming the file and saying what to do; ``PRAGMA quick_check`` at open
finds a damaged page before a reconcile pass trips over it. ``read_only=True`` (``amlops
status``) never writes, not even the schema, and works in a folder nobody may write to.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlops.backends.base import BackendError

SCHEMA_VERSION = 2

# One schema for the one file: the asset catalog's tables, then the object store's (objects,
# requests); one version and one migration, so a state directory is never half migrated.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS model_versions (
    workspace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    digest TEXT NOT NULL, type TEXT NOT NULL, description TEXT NOT NULL,
    tags TEXT NOT NULL, location TEXT NOT NULL, created_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (workspace, name, version));
CREATE TABLE IF NOT EXISTS computes (
    workspace TEXT NOT NULL, name TEXT NOT NULL, max_instances INTEGER NOT NULL,
    vm_size TEXT NOT NULL, PRIMARY KEY (workspace, name));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, pipeline TEXT NOT NULL,
    fingerprint TEXT NOT NULL, trigger TEXT NOT NULL, status TEXT NOT NULL,
    message TEXT NOT NULL, outputs TEXT NOT NULL, tags TEXT NOT NULL,
    interrupted INTEGER NOT NULL, created_at TEXT NOT NULL, ended_at TEXT,
    owner TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (workspace, pipeline, seq);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL,
    status TEXT NOT NULL, compute TEXT NOT NULL, exit_code INTEGER,
    started_at TEXT, ended_at TEXT, log TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS endpoints (
    workspace TEXT NOT NULL, name TEXT NOT NULL, auth_mode TEXT NOT NULL,
    port INTEGER NOT NULL, traffic TEXT NOT NULL, mirror_traffic TEXT NOT NULL,
    description TEXT NOT NULL, message TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (workspace, name));
CREATE TABLE IF NOT EXISTS deployments (
    workspace TEXT NOT NULL, endpoint TEXT NOT NULL, name TEXT NOT NULL,
    model TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL, port INTEGER NOT NULL, log TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (workspace, endpoint, name));
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, workspace TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, spec_hash TEXT NOT NULL, deletion_policy TEXT NOT NULL,
    status TEXT NOT NULL, PRIMARY KEY (kind, workspace, name));
CREATE TABLE IF NOT EXISTS requests (
    kind TEXT NOT NULL, workspace TEXT NOT NULL, name TEXT NOT NULL,
    requested_at TEXT NOT NULL, PRIMARY KEY (kind, workspace, name));
"""

# Columns added since schema 1: a state directory made by an older amlops gets them on open.
_ADDED_COLUMNS = (
    ("endpoints", "tags", "TEXT NOT NULL DEFAULT '{}'"),
    ("deployments", "tags", "TEXT NOT NULL DEFAULT '{}'"),
)


def dumps(value: Any) -> str:
    """The stored form of a JSON column: sorted keys, so equal values are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class StateError(BackendError):
    """The state directory or a file in it cannot be used as it is. The message names the file
    and says what to do; the command line shows it and exits 1 (it is not a bug of amlops)."""


# SQLite's words for "the file is not what it should be"; anything else (a lock held too long,
# a constraint) is not about the file and keeps its own exception
_CORRUPT = ("not a database", "malformed", "corrupt")
_READ_ONLY = ("readonly", "read-only")
_CANNOT_OPEN = ("unable to open",)
_DISK = ("disk i/o error", "database or disk is full")


def state_error(path: Path, exc: sqlite3.Error) -> StateError | None:
    """What ``exc``, raised using the catalog ``path``, means for the user; None when it is not
    about the file (the caller re-raises it)."""
    text = str(exc).lower()
    folder = path.parent
    if any(word in text for word in _CORRUPT):
        return StateError(
            f"the catalog {path} is not a SQLite database or is damaged ({exc}): move it "
            "aside (amlops never deletes it) and run `amlops up` again, which rebuilds the "
            "state from the manifests"
        )
    if any(word in text for word in _READ_ONLY):
        return StateError(
            f"cannot write the catalog {path} ({exc}): make {folder} and the files in it "
            "writable, or use another --state-dir"
        )
    if any(word in text for word in _CANNOT_OPEN):
        return StateError(
            f"cannot open the catalog {path} ({exc}): check that {folder} is a folder you "
            "may read and write, or use another --state-dir"
        )
    if any(word in text for word in _DISK):
        return StateError(f"cannot use the catalog {path} ({exc}): check the disk it is on")
    return None


class Database:
    """Thread-safe: one connection behind a lock, shared by runner threads and the loop."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self.writes = 0
        self._lock = threading.RLock()
        with self._translated():
            self._db = self._connect_read_only() if read_only else self._connect()
        try:
            self.check()
            if read_only:
                self._check_schema()
            else:
                self._create_schema()
        except BaseException:
            self._db.close()
            raise
        self.writes = 0  # creating the schema is not a write anyone asked for

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # created owner-only before SQLite writes a byte (its -wal and -shm files copy
                # the mode): the catalog names endpoints and runs, nobody else needs to read it
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StateError(
                f"cannot create the catalog {self.path} ({exc.strerror}): make "
                f"{self.path.parent} a folder you may write to, or use another --state-dir"
            ) from exc
        # isolation_level=None: we issue BEGIN ourselves, so reads never hold a transaction open
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        """Opens without creating or writing anything, even SQLite's own ``-wal``/``-shm``.

        A WAL file with content means a writer (a running ``amlops up``, or one killed before
        it checkpointed) has changes the main file lacks: ``mode=ro`` reads them, sharing the
        writer's index. With no WAL nobody is writing, and ``immutable=1`` reads the file as it
        stands, which also works where nobody may write (``mode=ro`` would have to create the
        index there, and fail)."""
        if not self.path.is_file():
            raise StateError(
                f"there is no catalog at {self.path}: run `amlops up` first, or pass the "
                "--state-dir it used"
            )
        wal = self.path.with_name(self.path.name + "-wal")
        live = wal.exists() and wal.stat().st_size > 0
        quoted = urllib.parse.quote(str(self.path))
        uri = f"file:{quoted}?mode=ro" if live else f"file:{quoted}?immutable=1"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def _create_schema(self) -> None:
        with self.transaction() as tx:
            tx.executescript_no_commit(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                if column not in tx.columns(table):
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            tx.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _check_schema(self) -> None:
        """A reader cannot migrate: refuse a catalog an older amlops wrote, or one that is not
        ours, rather than fail on a missing column later."""
        try:
            found = self.get_meta("schema_version")
        except sqlite3.Error:  # no meta table: not a catalog amlops wrote
            found = None
        if found != str(SCHEMA_VERSION):
            raise StateError(
                f"the catalog {self.path} has schema version {found or 'none'}, this amlops "
                f"reads version {SCHEMA_VERSION}: run `amlops up` once to bring it up to date"
            )

    def check(self) -> None:
        """SQLite's quick integrity check: a damaged page is found here, named, not in the
        middle of a reconcile pass. Cheap next to a pass (milliseconds for a laptop's state)."""
        with self._lock, self._translated():
            rows = [str(r[0]) for r in self._db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            detail = rows[0].splitlines()[-1] if rows and rows[0].strip() else "failed"
            raise StateError(
                f"the catalog {self.path} is damaged (SQLite integrity check: {detail}): move "
                "it aside (amlops never deletes it) and run `amlops up` again, which rebuilds "
                "the state from the manifests"
            )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            error = state_error(self.path, exc)
            if error is None:
                raise
            raise error from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write; counted in ``writes`` when it commits."""
        with self._lock, self._translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._db)
            except BaseException:
                # a damaged file may refuse the rollback too: the first error is the one to show
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.writes += 1

    def fetch_one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock, self._translated():
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def fetch_all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock, self._translated():
            return list(self._db.execute(sql, args).fetchall())

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        if self.get_meta(key) == value:
            return
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        if self.get_meta(key) is None:
            return
        with self.transaction() as tx:
            tx.execute("DELETE FROM meta WHERE key = ?", (key,))


class Transaction:
    """The statements allowed inside ``Database.transaction()``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self._db.execute(sql, args)

    def scalar(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._db.execute(sql, args).fetchone()[0]

    def columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})")}

    def executescript_no_commit(self, script: str) -> None:
        # executescript() would COMMIT first; run the DDL statement by statement instead
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)
