"""A loopback Git server for tests: ``git daemon`` (git://) and smart HTTP (``git http-backend``
behind a small threaded Python server, optionally requiring a basic-auth token), both on free
loopback ports, serving every repository under one root.

    with GitServer(tmp_path, token="s3cret") as server:
        repo = server.create("platform")                  # a bare repo + a work tree
        sha = repo.commit({"manifests/m.yaml": "..."})    # write files, commit, push
        repo.tag("v1.0.0")                                # annotated tag of HEAD, pushed
        server.git_url("platform")     # git://127.0.0.1:PORT/platform.git
        server.http_url("platform")    # http://127.0.0.1:PORT/platform.git (token needed)
        server.requests                # HTTP requests served, for "fetched incrementally"

``commit`` takes ``{path: text | bytes | None}`` (None deletes) and ``symlinks={path: target}``;
it returns the new commit's sha. ``branch`` names the branch to commit to (default ``main``).
"""

from __future__ import annotations

import base64
import hmac
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

GIT = shutil.which("git") or "/usr/bin/git"
GIT_CORE = Path(subprocess.run([GIT, "--exec-path"], capture_output=True, text=True).stdout.strip())
_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def model_manifest(
    name: str,
    description: str = "first",
    *,
    model: str | None = None,
    asset: str | None = None,
    pinned: bool = True,
) -> str:
    """A Model manifest for a served repository: the object ``name`` in the example platform's
    dev workspace, registering Azure ML model ``model`` (default ``name``; version 1 unless not
    ``pinned``) from the repository's ``assets/<asset>`` (default ``name``)."""
    version = '\n    version: "1"' if pinned else ""
    return f"""\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  workspace: mlw-platform-dev
  model:
    name: {model or name}{version}
    path: ../assets/{asset or name}
    description: {description}
"""


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [GIT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **_ENV},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Repository:
    """A bare repository served by the server, and the work tree tests commit from."""

    def __init__(self, bare: Path, work: Path) -> None:
        self.bare = bare
        self.work = work

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        *,
        symlinks: Mapping[str, str] | None = None,
        message: str = "change",
        branch: str = "main",
    ) -> str:
        """Write ``files`` (None deletes) and ``symlinks`` on ``branch``, commit, push; the sha."""
        if git(self.work, "symbolic-ref", "--short", "HEAD") != branch:
            exists = git(self.work, "branch", "--list", branch)
            git(self.work, "checkout", "-q", *([branch] if exists else ["-b", branch]))
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        for rel, target in (symlinks or {}).items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(target)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return self.head()

    def tag(self, name: str, *, annotated: bool = True, ref: str = "HEAD") -> str:
        """Tag ``ref`` and push the tag; the commit's sha."""
        if annotated:
            git(self.work, "tag", "-a", "-m", name, name, ref)
        else:
            git(self.work, "tag", name, ref)
        git(self.work, "push", "-q", "origin", f"refs/tags/{name}")
        return git(self.work, "rev-parse", f"{name}^{{commit}}")

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")


class GitServer:
    """``git daemon`` and smart HTTP on loopback over ``root``; a context manager."""

    def __init__(self, root: Path, *, token: str | None = None, user: str = "git") -> None:
        self.root = root / "served"
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.user = user
        self.requests: list[str] = []  # "GET /platform.git/info/refs?service=..." per request
        self._daemon: subprocess.Popen[bytes] | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self.git_port = 0
        self.http_port = 0

    # -- repositories --

    def create(self, name: str, *, default_branch: str = "main") -> Repository:
        bare = self.root / f"{name}.git"
        git(self.root, "init", "-q", "--bare", "-b", default_branch, str(bare))
        git(bare, "config", "http.receivepack", "false")
        work = self.root.parent / "work" / name
        work.mkdir(parents=True)
        git(work, "init", "-q", "-b", default_branch)
        git(work, "remote", "add", "origin", str(bare))
        return Repository(bare, work)

    def git_url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.git_port}/{name}.git"

    def http_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{name}.git"

    # -- lifecycle --

    def __enter__(self) -> GitServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.git_port = free_port()
        self._daemon = subprocess.Popen(
            [
                GIT,
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.git_port}",
                f"--base-path={self.root}",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_ENV},
        )
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:  # git daemon binds after it starts
            try:
                socket.create_connection(("127.0.0.1", self.git_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._daemon.poll() is not None:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._daemon is not None:
            self._daemon.terminate()
            self._daemon.wait(10)
            self._daemon = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep the test output clean

            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _authorised(self) -> bool:
                if server.token is None:
                    return True
                expected = base64.b64encode(f"{server.user}:{server.token}".encode()).decode()
                got = self.headers.get("Authorization", "")
                return hmac.compare_digest(got, f"Basic {expected}")

            def _cgi(self) -> None:
                server.requests.append(f"{self.command} {self.path}")
                if not self._authorised():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    **os.environ,
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "REMOTE_ADDR": "127.0.0.1",
                }
                if self.headers.get("Content-Encoding") == "gzip":
                    env["HTTP_CONTENT_ENCODING"] = "gzip"
                proc = subprocess.run(
                    [str(GIT_CORE / "git-http-backend")],
                    input=body,
                    capture_output=True,
                    env=env,
                    check=False,
                )
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                status = 200
                headers: list[tuple[str, str]] = []
                for line in head.decode("latin-1").split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
