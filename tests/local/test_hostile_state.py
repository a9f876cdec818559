"""A state directory in a bad way, and files that leak or never end: each is refused or repaired
with a message that names the file and says what to do (exit 1), never a traceback, never an
endless retry, never a file readable by others."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import EndpointSpec
from amlops.backends.local.backend import CATALOG_FILE, LocalBackend
from amlops.backends.local.cas import ArtifactStore
from amlops.backends.local.db import Database, StateError
from amlops.backends.local.objects import ObjectStore

from .conftest import WS, amlops

_PAGE = 4096
_MAIN = "import sys; from amlops.cli import main; sys.exit(main())"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _no_traceback(result: Any) -> None:
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "internal error" not in out, out


def _catalog_with_rows(path: Path, rows: int = 300) -> None:
    """A valid catalog spanning many pages (so that one can be damaged in the middle)."""
    db = Database(path)
    try:
        for i in range(rows):
            ObjectStore(db).put_object(
                {
                    "kind": "Model",
                    "workspace": WS,
                    "name": f"m{i}",
                    "generation": 1,
                    "spec_hash": "x" * 64,
                    "deletion_policy": "Delete",
                    "status": {"note": "y" * 200},
                }
            )
    finally:
        db.close()  # the last connection checkpoints: everything is in the main file


def _damage_a_middle_page(path: Path) -> None:
    pages = path.stat().st_size // _PAGE
    assert pages > 8, pages
    with path.open("r+b") as f:
        f.seek((pages // 2) * _PAGE)
        f.write(b"\xff" * _PAGE)


# -- the artifact store and the state directory are owner-only -------------------------------


def test_a_file_only_its_owner_could_read_stays_so_in_the_artifact_store(tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    secret = src / "weights.bin"
    secret.write_bytes(b"private")
    secret.chmod(0o600)
    tool = src / "run.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    store = ArtifactStore(tmp_path / "state" / "artifacts")
    digest = store.put_tree(src)
    store.materialize(digest, tmp_path / "state" / "models" / "m")

    for folder, dirs, files in os.walk(store.root):
        for name in dirs:
            assert _mode(Path(folder) / name) == 0o700, Path(folder) / name
        for name in files:
            path = Path(folder) / name
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
            if path.parent.name != "trees":  # objects are never writable: shared by links
                assert _mode(path) & 0o222 == 0, (path, oct(_mode(path)))
    materialized = tmp_path / "state" / "models" / "m"
    assert _mode(materialized / "weights.bin") == 0o400
    assert _mode(materialized / "run.sh") == 0o500
    assert _mode(materialized) & 0o077 == 0


def test_the_state_directory_is_created_owner_only_and_ignored_by_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.yaml").write_text("kind: Model\n")
    state = repo / ".amlops"
    LocalBackend(state).close()
    assert _mode(state) == 0o700
    assert "*" in (state / ".gitignore").read_text().splitlines()
    assert _mode(state / CATALOG_FILE) == 0o600

    git = shutil.which("git")
    if git is None:
        return
    keys = state / "keys" / WS / "e.json"  # what `up` writes for an endpoint
    keys.parent.mkdir(parents=True)
    keys.write_text("{}")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run([git, *args], cwd=repo, env=env, check=True, capture_output=True)
    listed = subprocess.run(
        [git, "ls-files"], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert listed == ["model.yaml"]


def test_a_state_directory_of_ours_that_others_may_read_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    LocalBackend(state).close()
    state.chmod(0o755)  # as an older amlops made it
    backend = LocalBackend(state)
    backend.close()
    assert _mode(state) == 0o700
    assert any(str(state) in note for note in backend.notes)


def test_a_folder_of_the_users_is_not_chmod_ed_but_named_in_a_note(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    (shared / "notes.txt").write_text("theirs")
    for _ in range(2):  # the second time it holds a catalog too: still theirs
        backend = LocalBackend(shared)
        backend.close()
        assert _mode(shared) == 0o755
        assert any("chmod 700" in note and str(shared) in note for note in backend.notes)
        assert not (shared / ".gitignore").exists()  # `*` would hide their notes.txt from Git


# -- a catalog that is not a database, or is damaged -----------------------------------------


def test_a_catalog_that_is_not_a_database_is_named_with_what_to_do(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / CATALOG_FILE).write_text("this is not sqlite\n" * 100)
    with pytest.raises(StateError) as caught:
        LocalBackend(state)
    assert str(state / CATALOG_FILE) in str(caught.value)
    assert "move it aside" in str(caught.value)
    with pytest.raises(StateError):
        LocalBackend(state, read_only=True)
    assert (state / CATALOG_FILE).read_text().startswith("this is not sqlite")  # kept


def test_a_damaged_page_is_found_when_the_catalog_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "state" / CATALOG_FILE
    _catalog_with_rows(path)
    _damage_a_middle_page(path)
    for read_only in (False, True):
        with pytest.raises(StateError) as caught:
            Database(path, read_only=read_only)
        assert str(path) in str(caught.value)


@pytest.mark.slow
def test_status_and_up_stop_at_a_corrupt_catalog_with_exit_1(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    catalog = state / CATALOG_FILE
    catalog.write_bytes(b"\x00garbage" * 512)
    for args in (["status"], ["up", str(platform), "--once", "--timeout", "60"]):
        result = amlops(*args, "--state-dir", str(state), cwd=tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert str(catalog) in result.stderr
        _no_traceback(result)


@pytest.mark.slow
def test_up_once_stops_at_a_damaged_page_instead_of_retrying_until_the_timeout(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    catalog = state / CATALOG_FILE
    _catalog_with_rows(catalog)
    _damage_a_middle_page(catalog)
    status = amlops("status", "--state-dir", str(state), cwd=tmp_path)
    assert status.returncode == 1, status.stdout  # not the stale rows with exit 0
    assert str(catalog) in status.stderr
    started = time.monotonic()
    up = amlops(
        "up", str(platform), "--once", "--timeout", "60", "--state-dir", str(state), cwd=tmp_path
    )
    assert up.returncode == 1, up.stdout + up.stderr
    assert time.monotonic() - started < 30
    assert str(catalog) in up.stderr
    assert "reconcile pass failed" not in up.stdout
    _no_traceback(up)


# -- a state directory that is a file, cannot be created, or cannot be written --------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a file", "under /dev/null"])
def test_a_state_directory_that_cannot_be_one_is_refused_by_name(
    platform: Path, tmp_path: Path, where: str
) -> None:
    if where == "a file":
        state = tmp_path / "state"
        state.write_text("not a folder")
        named = str(state)
    else:
        state = Path("/dev/null/state")
        named = "/dev/null"
    commands = [
        ["up", str(platform), "--once"],
        ["status"],
        ["run", "finetune-support-slm", "--path", str(platform)],
    ]
    for args in commands:
        result = amlops(*args, "--state-dir", str(state), cwd=tmp_path)
        assert result.returncode in (1, 2), (args, result.stdout + result.stderr)
        assert named in result.stderr, (args, result.stderr)
        _no_traceback(result)
    up = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert up.returncode == 1  # the machine's state, not a usage error


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[list[str]]:
    """A prefix for a command that sees ``folder`` read-only. Root ignores file modes, so as
    root the command runs in its own mount namespace with ``folder`` bind-mounted read-only (as
    a read-only mount or volume would be); as anyone else, write permission is removed."""
    if os.geteuid() != 0:
        modes = {p: _mode(p) for p in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield []
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare(1): no way to make a folder read-only")
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("running as root without mount namespaces: cannot make a read-only bind")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    yield [unshare, "-m", "sh", "-c", script, str(folder)]


def _cli(prefix: list[str], *args: str, cwd: Path) -> Any:
    return subprocess.run(
        [*prefix, sys.executable, "-c", _MAIN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_status_reads_a_read_only_state_directory_and_up_refuses_it_by_name(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    _catalog_with_rows(state / CATALOG_FILE, rows=3)
    before = sorted(p.name for p in state.iterdir())
    with _read_only(state) as prefix:
        status = _cli(prefix, "status", "--state-dir", str(state), "-o", "json", cwd=tmp_path)
        up = _cli(prefix, "up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert '"name": "m2"' in status.stdout
    assert up.returncode == 1, up.stdout + up.stderr
    assert str(state) in up.stderr and "not writable" in up.stderr
    _no_traceback(up)
    assert sorted(p.name for p in state.iterdir()) == before  # no -wal, -shm, lock


def test_a_read_only_catalog_creates_no_file_and_sees_what_a_writer_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / CATALOG_FILE
    _catalog_with_rows(path, rows=2)
    before = sorted(os.listdir(tmp_path))
    reader = Database(path, read_only=True)
    assert len(ObjectStore(reader).list_objects()) == 2
    reader.close()
    assert sorted(os.listdir(tmp_path)) == before

    writer = Database(path)  # a running `amlops up`: its changes sit in the WAL
    try:
        ObjectStore(writer).request("Pipeline", WS, "p", "now")
        reader = Database(path, read_only=True)
        try:
            assert ObjectStore(reader).get_request("Pipeline", WS, "p") == "now"
            with pytest.raises(StateError):
                ObjectStore(reader).request("Pipeline", WS, "q", "now")  # never writes
        finally:
            reader.close()
    finally:
        writer.close()


def test_a_catalog_from_an_older_amlops_is_not_migrated_by_a_reader(tmp_path: Path) -> None:
    path = tmp_path / CATALOG_FILE
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    with pytest.raises(StateError) as caught:
        Database(path, read_only=True)
    assert "amlops up" in str(caught.value) and str(path) in str(caught.value)


# -- invoke --data, endpoint keys --------------------------------------------------------------


@pytest.mark.slow
def test_invoke_refuses_devices_fifos_and_oversized_bodies_without_reading_them(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 4096)
    cases = [
        ("/dev/zero", []),
        (str(fifo), []),
        (str(tmp_path), []),
        (str(big), ["--max-data-mib", "0.001"]),
    ]
    for data, extra in cases:
        started = time.monotonic()
        result = amlops(
            "invoke", "e", "--data", data, *extra, "--state-dir", str(tmp_path / "s"), cwd=tmp_path
        )
        assert time.monotonic() - started < 30
        assert result.returncode == 2, (data, result.stderr)
        assert data in result.stderr, result.stderr
        _no_traceback(result)


def test_a_deleted_key_file_is_restored_with_the_same_keys(backend: LocalBackend) -> None:
    backend.create_or_update_endpoint(EndpointSpec(WS, "e", "key", {}))
    path = backend.root / "keys" / WS / "e.json"
    keys = backend.get_endpoint_keys(WS, "e")
    path.unlink()
    assert backend.get_endpoint(WS, "e") is not None  # what every reconcile pass observes
    assert path.is_file()
    assert _mode(path) == 0o600
    assert backend.get_endpoint_keys(WS, "e") == keys  # clients keep working
