"""Child processes that outlive their parent: pid files, identity checks, group stops, ports.

Every process the local backend starts (a pipeline step, a scoring server) gets its own
session, so it and everything it forks can be stopped as one process group, and a pid file
recording its pid and start time. After a ``kill -9`` of ``amlops up`` the next one reads the
pid files and either adopts what is still running or stops it; the start time guards against
a recycled pid belonging to some unrelated process.

Children do not inherit the environment of ``amlops``: they start from ``base_environment()``
plus what their spec sets, as Azure ML jobs and scoring containers do. The user's shell often
holds Azure credentials (``AZURE_CLIENT_SECRET``, tokens) that user code must never see.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# what a child needs to run at all: find programs (PATH, and VIRTUAL_ENV for tools that look
# for the venv), a home, a locale, a temporary folder
_INHERITED = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV"})


def base_environment() -> dict[str, str]:
    """The part of this process's environment a child may see (see the module docstring)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in _INHERITED or name.startswith("LC_")
    }


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start: str | None  # the kernel's start time of the process; None where /proc is missing
    extra: dict[str, Any] = field(default_factory=dict)


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of stat(5), counted from field 3


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] == "Z"


def is_alive(record: PidRecord) -> bool:
    """True when ``record`` still names the process it was written for."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but not ours: certainly not the process we started
        return False
    if _zombie(record.pid):
        return False
    if record.start is not None:
        return process_start(record.pid) == record.start
    return True


def write_pid_file(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), data.get("start"), dict(data.get("extra") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], PidRecord]:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, PidRecord(proc.pid, process_start(proc.pid))


def stop_group(
    record: PidRecord, proc: subprocess.Popen[bytes] | None = None, grace_s: float = 5.0
) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``; reap it when it is our child."""
    if proc is not None and proc.poll() is not None:
        _kill_group(record.pid, signal.SIGKILL)  # the leader is gone; make sure its group is
        return
    if proc is None and not is_alive(record):
        # the leader is gone but its workers may not be; a pgid cannot be handed out again
        # while any member of the group lives, so this reaches only what we started
        _kill_group(record.pid, signal.SIGKILL)
        return
    _kill_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                break
        elif not is_alive(record):
            break
        time.sleep(0.05)
    _kill_group(record.pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A loopback port nobody listens on right now (the caller must cope with losing a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
