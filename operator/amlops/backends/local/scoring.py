"""Online deployments as local scoring servers (``azmlinfsrv``, one per deployment).

A deployment's server runs the deployment's scoring script from a snapshot of its code folder
with ``AZUREML_MODEL_DIR`` set to the model version's folder: the Azure ML contract, so
``init()``/``run()`` behave as they would in Azure. States follow Azure's provisioning states:
``Creating`` until the server answers its health check, then ``Succeeded``; ``Failed`` when it
exits first (the message says why, e.g. the exception ``init()`` raised) or never answers.
A server that dies after it was serving is started again at once, as Azure ML (and the kubelet)
restart a crashed scoring container: a watcher thread looks at every server this process started
twice a second, so a killed server costs a few seconds of 502s, not a drift interval. A server
that keeps dying is restarted with a growing delay (``RESTART_DELAYS_S``); one that dies while
starting is ``Failed`` (reconcile reports why), and one adopted from an earlier process (whose
launch this process does not know) becomes ``Stopped`` so that reconcile starts it again.

A server listens on a Unix socket, not a TCP port (see ``serve``): the socket file is 0600, in
the deployment's 0700 folder, so the endpoint's router, which checks the key, is the only way
in for anyone but this user. Its health check goes through the same socket.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlops.backends.base import (
    BackendError,
    DeploymentSpec,
    DeploymentState,
    ModelVersion,
    ProvisioningState,
)
from amlops.backends.local import procs
from amlops.backends.local.cas import ArtifactStore
from amlops.backends.local.catalog import AssetCatalog, deployment_state

STARTUP_TIMEOUT_S = 60.0
# how often the watcher looks at the servers: a dead one is noticed within this
WATCH_INTERVAL_S = 0.5
# a server that died after serving is restarted after the first delay, one that dies again
# soon after the next (CrashLoopBackOff's idea); serving this long resets the count
RESTART_DELAYS_S = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
_RESTART_RESET_S = 60.0
_HEALTH_TIMEOUT_S = 0.5
# sockaddr_un.sun_path holds 108 bytes on Linux, the last one for the terminating NUL
_SOCKET_PATH_MAX = 107
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit|Interrupt)\b.*:")
_IN_PROGRESS = (ProvisioningState.CREATING, ProvisioningState.UPDATING)

Key = tuple[str, str, str]  # workspace, endpoint, deployment

log = logging.getLogger(__name__)


@dataclass
class _Server:
    record: procs.PidRecord
    socket: Path
    fingerprint: str
    started: float
    proc: subprocess.Popen[bytes] | None = None  # None when adopted from an earlier process
    # how it was started, to start it again (None when adopted: reconcile starts it again)
    launch: dict[str, Any] | None = None
    restarts: int = 0  # restarts in a row, each after a short life (RESTART_DELAYS_S)
    died: float | None = None  # when the watcher found it dead (monotonic)

    def exit_code(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        return None if procs.is_alive(self.record) else -1


@functools.cache
def _serve_import_path() -> dict[str, str]:
    """``PYTHONPATH`` for the serve wrapper, when it needs one: when amlops is not installed
    in this interpreter but imported through the caller's PYTHONPATH or working directory.
    Asked of the interpreter itself, once, with the environment a server gets."""
    probe = subprocess.run(
        [sys.executable, "-c", "import amlops.backends.local"],
        cwd=tempfile.gettempdir(),
        env=procs.base_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return {}
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[3])}  # the folder of amlops/


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a server listening on a Unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def healthy(path: Path) -> bool:
    """azmlinfsrv's liveness probe: GET / on the scoring server's socket answers 200."""
    conn = UnixHTTPConnection(path, timeout=_HEALTH_TIMEOUT_S)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def failure_reason(log: Path) -> str:
    """Why a scoring server exited, from its log: the exception init() raised, if any."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()
    marker = next((i for i, line in enumerate(lines) if "init function failed" in line), None)
    # the server logs (and survives) errors of its own before init(); look after the marker
    relevant = lines[marker:] if marker is not None else lines
    exceptions = [line.strip() for line in relevant if _EXCEPTION_LINE.match(line.strip())]
    if exceptions:
        # Python prints the original exception first, then "direct cause" ones from the server
        where = "init() raised " if marker is not None else ""
        return where + exceptions[0][:300]
    if "Worker failed to boot" in text:
        return "the scoring script failed to load"
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1][:300] if tail else ""


class ScoringServers:
    def __init__(
        self,
        catalog: AssetCatalog,
        store: ArtifactStore,
        root: Path,
        model: Callable[[str, DeploymentSpec], ModelVersion | None],
        source_root: Path | None = None,
    ) -> None:
        self.catalog = catalog
        # code folders are named by manifests: the core's containment rule is checked again
        # right before they are read
        self.source_root = source_root
        self.store = store
        self.root = root
        self._model = model
        self._servers: dict[Key, _Server] = {}
        # one caller at a time per deployment: reconciles of several endpoints run in threads
        # of their own, and the watcher restarts servers in another
        self._locks: dict[Key, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._closing = threading.Event()

    def _dir(self, key: Key) -> Path:
        return self.root / "deployments" / key[0] / key[1] / key[2]

    def socket_path(self, key: Key) -> Path:
        """Where the deployment's server listens: in its own folder when the path fits in a
        socket address, else in a private folder under the temporary folder."""
        path = self._dir(key) / "server.sock"
        if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
            return path
        name = hashlib.sha256(os.fsencode(path)).hexdigest()[:24] + ".sock"
        short = Path(tempfile.gettempdir()) / f"amlops-{os.getuid()}" / name
        if len(os.fsencode(short)) > _SOCKET_PATH_MAX:
            raise BackendError(
                f"the scoring server's socket path would be too long ({path}): "
                "use a shorter --state-dir or TMPDIR"
            )
        return short

    def _row(self, key: Key) -> dict[str, Any] | None:
        for row in self.catalog.list_deployment_rows(key[0], key[1]):
            if row["name"] == key[2]:
                return row
        return None

    def _put(self, key: Key, **values: Any) -> None:
        row = self._row(key) or {
            "workspace": key[0],
            "endpoint": key[1],
            "name": key[2],
            "model": "",
            "fingerprint": "",
            "state": ProvisioningState.STOPPED,
            "message": "",
            "port": 0,
            "log": str(self._dir(key) / "server.log"),
            "tags": {},
        }
        row.update(values)
        self.catalog.put_deployment_row(row)

    # -- create / delete -------------------------------------------------------------------

    def _lock(self, key: Key) -> threading.RLock:
        """The deployment's lock: held by whoever starts, stops or looks at its server."""
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    def create_or_update(self, spec: DeploymentSpec) -> DeploymentState:
        with self._lock((spec.workspace, spec.endpoint, spec.name)):
            return self._create_or_update(spec)

    def _create_or_update(self, spec: DeploymentSpec) -> DeploymentState:
        key = (spec.workspace, spec.endpoint, spec.name)
        running = self._servers.get(key)
        if (
            running is not None
            and running.fingerprint == spec.fingerprint
            and running.exit_code() is None
        ):
            return self._refresh(key)
        self._stop(key)
        model = self._model(spec.workspace, spec)
        if model is None:
            return self._failed(
                key,
                spec,
                str(spec.model),
                f"model {spec.model} is not registered in workspace {spec.workspace}",
            )
        if spec.code_dir is None:
            raise BackendError(
                f"deployment {spec.name} has no code_configuration: Azure ML serves an MLflow "
                "model without code through its own MLflow server, which the local backend "
                "does not have; add code_configuration (a scoring script) to serve it locally"
            )
        script = spec.code_dir / spec.scoring_script
        if not script.is_file():
            return self._failed(
                key,
                spec,
                f"{model.name}:{model.version}",
                f"scoring script {script} does not exist",
            )
        # serve a snapshot: edits to the repository reach the server only through a new
        # fingerprint (a new deployment), never half-way through a running one
        # a model's own score.py in a local registry is the backend's file, not a manifest's
        owned = spec.code_dir.resolve().is_relative_to(self.root / "registries")
        digest = self.store.put_tree(spec.code_dir, root=None if owned else self.source_root)
        code = self._dir(key) / f"code-{digest.removeprefix('sha256:')[:16]}"
        self.store.materialize(digest, code)
        env = procs.base_environment() | _serve_import_path()
        env.update(spec.environment_variables)
        env["AZUREML_MODEL_DIR"] = model.location
        env["AML_APP_ROOT"] = str(code)
        launch = {
            "argv": [
                sys.executable,
                "-m",
                "amlops.backends.local.serve",
                "--entry_script",
                str(code / spec.scoring_script),
            ],
            "cwd": str(code),
            "env": env,
        }
        try:
            self._launch(key, spec.fingerprint, launch)
        except BackendError as exc:
            return self._failed(key, spec, f"{model.name}:{model.version}", str(exc))
        self._put(
            key,
            model=f"{model.name}:{model.version}",
            fingerprint=spec.fingerprint,
            tags=dict(spec.tags),
        )
        return self._refresh(key)

    def _failed(self, key: Key, spec: DeploymentSpec, model: str, message: str) -> DeploymentState:
        """Record a deployment that cannot start, with the reason users see."""
        self._put(
            key,
            model=model,
            fingerprint=spec.fingerprint,
            tags=dict(spec.tags),
            state=ProvisioningState.FAILED,
            message=message,
        )
        return self._refresh(key)

    def _launch(
        self, key: Key, fingerprint: str, launch: dict[str, Any], restarts: int = 0
    ) -> None:
        path = self.socket_path(key)
        _private_dir(self._dir(key))
        _private_dir(path.parent)
        path.unlink(missing_ok=True)  # left by a server that was killed; stopped before this
        log = self._dir(key) / "server.log"
        log.write_text("")  # one log per start: the reason a start failed is at its end
        proc, record = procs.spawn(
            [*launch["argv"], "--socket", str(path)],
            cwd=Path(launch["cwd"]),
            env=launch["env"],
            log=log,
        )
        record = procs.PidRecord(
            record.pid, record.start, {"socket": str(path), "fingerprint": fingerprint}
        )
        self._servers[key] = _Server(
            record, path, fingerprint, time.monotonic(), proc, launch, restarts
        )
        self._put(
            key,
            state=ProvisioningState.CREATING,
            port=0,
            message="starting the scoring server",
        )
        # last: whoever finds the new server's pid file finds it tracked and starting (a crash
        # before this is covered by its socket, see adopt_or_replace)
        procs.write_pid_file(self._dir(key) / "server.pid", record)
        self._watch()

    def stop(self, key: Key, message: str = "") -> None:
        with self._lock(key):
            self._stop(key, message)

    def _stop(self, key: Key, message: str = "") -> None:
        server = self._servers.pop(key, None)
        if server is not None:
            procs.stop_group(server.record, server.proc)
            server.socket.unlink(missing_ok=True)  # gunicorn removes it, unless it was killed
        (self._dir(key) / "server.pid").unlink(missing_ok=True)
        if message and self._row(key) is not None:
            self._put(key, state=ProvisioningState.STOPPED, message=message)

    def delete(self, key: Key) -> None:
        with self._lock(key):
            self._stop(key)
            self.catalog.delete_deployment_row(*key)
            shutil.rmtree(self._dir(key), ignore_errors=True)

    def stop_all(self, message: str) -> None:
        """Stop every server and the watcher (this object is done with)."""
        self._closing.set()
        for key in list(self._servers):
            self.stop(key, message)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        self._watcher = None
        # a restart the watcher had under way when the first round looked: stopped now
        for key in list(self._servers):
            self.stop(key, message)

    # -- observing -------------------------------------------------------------------------

    def refresh(self, key: Key) -> DeploymentState:
        """Look at the server and move the deployment's state on; returns the new state."""
        with self._lock(key):
            return self._refresh(key)

    def _refresh(self, key: Key) -> DeploymentState:
        row = self._row(key)
        assert row is not None, key
        server = self._servers.get(key)
        state = ProvisioningState(row["state"])
        log = Path(row["log"])
        if state in _IN_PROGRESS:
            if server is None:
                self._put(key, state=ProvisioningState.STOPPED, message="not running")
            elif server.exit_code() is not None:
                self._on_exit(key, server, log)
            elif healthy(server.socket):
                self._put(key, state=ProvisioningState.SUCCEEDED, message="")
            elif time.monotonic() - server.started > STARTUP_TIMEOUT_S:
                self._stop(key)
                self._put(
                    key,
                    state=ProvisioningState.FAILED,
                    message=f"the scoring server did not answer its health check within "
                    f"{STARTUP_TIMEOUT_S:g} s (log: {log})",
                )
        elif state is ProvisioningState.SUCCEEDED:
            code = None if server is None else server.exit_code()
            if server is None or code is not None:
                if server is not None:  # its workers may outlive it for a while
                    procs.stop_group(server.record, server.proc, grace_s=1)
                self._servers.pop(key, None)
                detail = f" (exit code {code})" if code not in (None, -1) else ""
                self._put(
                    key,
                    state=ProvisioningState.STOPPED,
                    message=f"the scoring server exited{detail}; log: {log}",
                )
        row = self._row(key)
        assert row is not None
        return deployment_state(row)

    def _on_exit(self, key: Key, server: _Server, log: Path) -> None:
        procs.stop_group(server.record, server.proc, grace_s=1)
        self._servers.pop(key, None)
        (self._dir(key) / "server.pid").unlink(missing_ok=True)
        code = server.exit_code()
        reason = failure_reason(log) or (f"exit code {code}" if code is not None else "")
        self._put(
            key,
            state=ProvisioningState.FAILED,
            message=f"the scoring server exited: {reason} (log: {log})",
        )

    def refresh_endpoint(self, workspace: str, endpoint: str) -> list[DeploymentState]:
        return [
            self.refresh((workspace, endpoint, row["name"]))
            for row in self.catalog.list_deployment_rows(workspace, endpoint)
        ]

    def targets(self, workspace: str, endpoint: str) -> dict[str, Path]:
        """Deployments that may get traffic (Succeeded and with a live server here): sockets."""
        out = {}
        for row in self.catalog.list_deployment_rows(workspace, endpoint):
            server = self._servers.get((workspace, endpoint, row["name"]))
            if server is None:
                continue
            # one the watcher is starting again keeps its route: its socket is the same, and
            # the router tries another deployment while nothing listens on it
            if row["state"] == ProvisioningState.SUCCEEDED or server.restarts:
                out[row["name"]] = server.socket
        return out

    def socket(self, key: Key) -> Path | None:
        server = self._servers.get(key)
        return server.socket if server is not None else None

    # -- the watcher -----------------------------------------------------------------------

    def _watch(self) -> None:
        """Start the watcher with the first server (a read-only backend never starts one)."""
        with self._locks_guard:  # launches of several deployments run in several threads
            if self._watcher is None and not self._closing.is_set():
                self._watcher = threading.Thread(
                    target=self._watch_loop, name="scoring-watcher", daemon=True
                )
                self._watcher.start()

    def _watch_loop(self) -> None:
        while not self._closing.wait(WATCH_INTERVAL_S):
            try:
                keys = list(self._servers)
            except RuntimeError:  # changed while copied: the next look has it
                continue
            for key in keys:
                try:
                    self.check(key)
                except Exception:  # the state directory went away, say: the next look retries
                    log.exception("checking the scoring server of %s failed", "/".join(key))

    def check(self, key: Key) -> None:
        """The watcher's look at one server: a starting one moves on to serving (or failed);
        one that died while serving is started again. A deployment a reconcile is busy with
        is left to it."""
        lock = self._lock(key)
        if not lock.acquire(blocking=False):
            return
        try:
            server = self._servers.get(key)
            row = self._row(key)
            if server is None or row is None or self._closing.is_set():
                return
            state = ProvisioningState(row["state"])
            if state in _IN_PROGRESS:
                self._refresh(key)
            elif state is ProvisioningState.SUCCEEDED and server.exit_code() is not None:
                self._restart(key, server, Path(row["log"]))
        finally:
            lock.release()

    def _restart(self, key: Key, server: _Server, log_path: Path) -> None:
        now = time.monotonic()
        if server.launch is None:  # adopted: reconcile starts it again
            self._refresh(key)
            return
        if server.died is None:
            server.died = now
            code = server.exit_code()
            log.warning(
                "the scoring server of %s exited (exit code %s) while serving; "
                "starting it again (log: %s)",
                "/".join(key),
                code,
                log_path,
            )
        # a server that served a while starts a fresh count; one that died soon after
        # its start waits longer each time
        restarts = 0 if server.died - server.started > _RESTART_RESET_S else server.restarts
        delay = RESTART_DELAYS_S[min(restarts, len(RESTART_DELAYS_S) - 1)]
        if now - server.died < delay:
            return
        procs.stop_group(server.record, server.proc, grace_s=1)  # workers that outlived it
        self._servers.pop(key, None)
        if self._closing.is_set():  # stop_all is under way: nothing new to leave behind
            return
        self._launch(key, server.fingerprint, server.launch, restarts + 1)

    # -- after a crash ---------------------------------------------------------------------

    def adopt_or_replace(self) -> None:
        """Servers left running by an ``amlops up`` that died: keep the ones still serving
        the deployment as recorded, stop the rest."""
        for row in self.catalog.all_deployment_rows():
            key: Key = (row["workspace"], row["endpoint"], row["name"])
            if key in self._servers:
                continue
            record = procs.read_pid_file(self._dir(key) / "server.pid")
            alive = record is not None and procs.is_alive(record)
            # a record without a socket is from a version that served on a TCP port: replaced
            path = Path(record.extra["socket"]) if record and record.extra.get("socket") else None
            same = record is not None and record.extra.get("fingerprint") == row["fingerprint"]
            if record is not None and alive and same and path is not None and healthy(path):
                self._servers[key] = _Server(record, path, row["fingerprint"], time.monotonic())
                procs.watch(record)  # adopted: it must die with this process like its own
                self._put(key, state=ProvisioningState.SUCCEEDED, port=0, message="")
                continue
            if record is not None:
                procs.stop_group(record)
                if path is not None:
                    path.unlink(missing_ok=True)
                (self._dir(key) / "server.pid").unlink(missing_ok=True)
            if row["state"] != ProvisioningState.FAILED:
                self._put(key, state=ProvisioningState.STOPPED, message="not running")
        # a server whose amlops died between starting it and recording it (no pid file, or no
        # row yet) is found by its socket, which names its deployment: nothing serves through it
        for folder in (self.root / "deployments").glob("*/*/*"):
            key = (folder.parent.parent.name, folder.parent.name, folder.name)
            adopted = self._servers.get(key)
            for record in procs.leaders_with_arguments("--socket", str(self.socket_path(key))):
                if adopted is None or adopted.record.pid != record.pid:
                    procs.stop_group(record)


def _private_dir(path: Path) -> None:
    """Make ``path`` a folder only this user can enter, or refuse one that is not.

    The fallback socket folder is in the shared temporary folder, where another user could
    have made it first (to listen in our place): an existing one must be ours, a real folder
    (not a link) and closed to others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:  # a dangling link, a file in the way
        raise BackendError(f"cannot make the folder {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise BackendError(f"{path} is not a folder of this user; remove it and try again")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
