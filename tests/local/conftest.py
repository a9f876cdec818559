"""Fixtures for the local backend: a copy of the example platform, backends, tiny pipelines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import ComputeInfo
from amlops.backends.local.backend import LocalBackend

ROOT = Path(__file__).resolve().parents[2]
WS = "ws"
# A scoring script that answers with the model's answer.json (a folder model is mounted one
# level down, as on Azure ML): what a test reads back tells which model version served it.
SCORE = """\
import json
import os

ANSWER = {}


def init():
    for root, _, files in os.walk(os.environ["AZUREML_MODEL_DIR"], followlinks=True):
        if "answer.json" in files:
            with open(os.path.join(root, "answer.json"), encoding="utf-8") as f:
                ANSWER.update(json.load(f))


def run(raw_data):
    return ANSWER
"""


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    """A private copy of manifests/ that a test may edit."""
    target = tmp_path / "manifests"
    shutil.copytree(
        ROOT / "manifests", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "state")
    b.start()
    b.put_compute(ComputeInfo(WS, "cpu", 2))
    yield b
    b.close()


def amlops(*args: str, cwd: Path, timeout: float = 120, check: int | None = None) -> Any:
    """Run the CLI in a child process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from amlops.cli import main; sys.exit(main())", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def start_amlops(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from amlops.cli import main; sys.exit(main())", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def start_up(platform: Path, state: Path) -> subprocess.Popen[str]:
    """`amlops up` in the background, with a short drift interval."""
    return start_amlops(
        "up", str(platform), "--state-dir", str(state), "--interval", "1", cwd=state.parent
    )


def status_json(cwd: Path, state_dir: Path) -> dict[str, Any]:
    proc = amlops("status", "--state-dir", str(state_dir), "-o", "json", cwd=cwd, check=0)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def obj(status: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in status["objects"] if o["kind"] == kind and o["name"] == name)


def ready(record: dict[str, Any]) -> str:
    return str(next(c for c in record["status"]["conditions"] if c["type"] == "Ready")["status"])


def script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` (leak detector)."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
