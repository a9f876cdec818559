"""Azurite (Microsoft's storage emulator, npm ``azurite@3.35.0``) on a free loopback port.

Installed outside the repository by ``tests/azure/tools.sh`` (``make azure-tools``); the first
use of :func:`tool_path` runs that script when the tool is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS_SCRIPT = HERE / "tools.sh"
AZURITE_VERSION = "3.35.0"
OAV_VERSION = "4.0.3"


def node_cache() -> Path:
    return Path(os.environ.get("AMLOPS_NODE_CACHE", Path.home() / ".cache" / "amlops" / "node"))


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def tool_path(name: str, version: str, binary: str) -> Path | None:
    """``.../node_modules/.bin/BINARY`` of the cached tool, installing it on first use; None
    when node/npm are missing."""
    if not node_available():
        return None
    path = node_cache() / f"{name}-{version}" / "node_modules" / ".bin" / binary
    stamp = node_cache() / f"{name}-{version}" / ".installed"
    if not (path.exists() and stamp.exists()):
        subprocess.run(["bash", str(TOOLS_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Azurite:
    """A running ``azurite-blob`` (HTTPS, in-memory, no telemetry)."""

    process: subprocess.Popen[bytes]
    port: int
    log_file: Path

    @property
    def suffix(self) -> str:
        """The storage suffix: ``https://{account}.blob.{suffix}`` reaches this server."""
        return f"core.localhost:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_azurite(workdir: Path, cert: Path, key: Path, *, timeout: float = 60.0) -> Azurite:
    binary = tool_path("azurite", AZURITE_VERSION, "azurite-blob")
    if binary is None:
        raise RuntimeError("node/npm are not installed: cannot run Azurite")
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        log_file = workdir / f"azurite-{port}.log"
        cmd = [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--cert",
            str(cert),
            "--key",
            str(key),
        ]
        with log_file.open("wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return Azurite(process, port, log_file)
            except OSError:
                time.sleep(0.1)
        if process.poll() is None:
            process.kill()
            process.wait(10)
        last_error = log_file.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Azurite did not start: {last_error}")
