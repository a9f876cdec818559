"""Child processes that outlive their parent: pid files, identity checks, group stops, ports.

Every process the local backend starts (a pipeline step, a scoring server) gets its own
session, so it and everything it forks can be stopped as one process group, and a pid file
recording its pid and start time. After a ``kill -9`` of ``amlops up`` the next one reads the
pid files and either adopts what is still running or stops it; the start time guards against
a recycled pid belonging to some unrelated process.

A child must not outlive the ``amlops`` that started it, even one killed with ``kill -9``
(which runs no cleanup): a step would go on writing into the state directory and a scoring
server would go on answering on its port, with nobody to stop either. Every group is therefore
registered with a watchdog: one small process per ``amlops`` process, in its own session,
reading group ids from a pipe whose only write end ``amlops`` holds. The kernel closes that end
however ``amlops`` ends; the watchdog then sees end-of-file, stops every group still registered
(SIGTERM, SIGKILL after a grace period) and exits. A parent-death signal
(``prctl(PR_SET_PDEATHSIG)``) was the other candidate; it was not chosen because it reaches
only the direct child, not what that child forks (``sh -c "python train.py"`` leaves Python
running, gunicorn's workers survive their master for a while), and it fires when the *thread*
that forked exits, which for a step is a short-lived runner thread. The pid files stay: they
let the next ``amlops up`` adopt or stop what is left when even the watchdog was killed.

Children do not inherit the environment of ``amlops``: they start from ``base_environment()``
plus what their spec sets, as Azure ML jobs and scoring containers do. The user's shell often
holds Azure credentials (``AZURE_CLIENT_SECRET``, tokens) that user code must never see.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
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


def leaders_with_arguments(*args: str) -> list[PidRecord]:
    """Session leaders (what ``spawn`` starts) whose command line holds ``args`` in a row: a
    child an ``amlops`` started and died before recording, found by its unique arguments."""
    needle = b"\0" + b"\0".join(os.fsencode(a) for a in args) + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getsid(pid) != pid or needle not in (entry / "cmdline").read_bytes():
                continue
        except OSError:  # gone, or not ours to look at
            continue
        found.append(PidRecord(pid, process_start(pid)))
    return found


def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], PidRecord]:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log``; its group
    is stopped when this process ends, however it ends (see the module docstring)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    _WATCHDOG.ensure_running()
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
    record = PidRecord(proc.pid, process_start(proc.pid))
    try:
        _WATCHDOG.watch(record)
    except OSError:  # unwatched, it could outlive us: better not to run it at all
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc, record


def watch(record: PidRecord) -> None:
    """Stop ``record``'s group when this process ends: for a process adopted from an earlier
    ``amlops`` (``spawn`` registers what it starts itself)."""
    _WATCHDOG.watch(record)


def _watchdog_main() -> None:  # pragma: no cover - runs in the watchdog process
    """The watchdog process: ``+ PGID START`` adds a group, ``- PGID`` drops it; end of input
    (whoever started it has ended) stops every group left. Runs with ``python -I -S``, so it
    imports nothing of amlops: it is sent as source and must stay self-contained."""
    import os as os_
    import signal as signal_
    import sys as sys_
    import time as time_

    def start_of(pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return None
        return stat[stat.rindex(")") + 2 :].split()[19]

    groups: dict[int, str] = {}
    for line in sys_.stdin:
        op, _, rest = line.strip().partition(" ")
        pgid, _, start = rest.partition(" ")
        if op == "+" and pgid.isdigit():
            groups[int(pgid)] = start
        elif op == "-" and pgid.isdigit():
            groups.pop(int(pgid), None)

    def signal_all(sig: int) -> bool:
        any_left = False
        for pgid, start in list(groups.items()):
            now = start_of(pgid)
            if now is not None and start and now != start:
                # the leader's pid was given to another process; the kernel does not hand out
                # the pid of a group with members left, so nothing of ours is in that group
                del groups[pgid]
                continue
            try:
                os_.killpg(pgid, sig)
                any_left = True
            except OSError:
                del groups[pgid]
        return any_left

    if signal_all(signal_.SIGTERM):
        deadline = time_.monotonic() + 3.0
        while time_.monotonic() < deadline and signal_all(0):
            time_.sleep(0.1)
        signal_all(signal_.SIGKILL)


class _Watchdog:
    """This process's watchdog (see the module docstring): started before the first child,
    started again (told every live group) if something killed it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: dict[int, PidRecord] = {}

    def ensure_running(self) -> None:
        """Raises OSError when it cannot be started: then no child may be started either."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()

    def watch(self, record: PidRecord) -> None:
        with self._lock:
            self._groups[record.pid] = record
            self._send(f"+ {record.pid} {record.start or ''}\n")

    def forget(self, pgid: int) -> None:
        """Never raises: the group is stopped already, at worst the watchdog signals an empty
        group (the start time it was given keeps it from reaching a recycled pid)."""
        with self._lock:
            if self._groups.pop(pgid, None) is not None:
                with contextlib.suppress(OSError):
                    self._send(f"- {pgid}\n")

    def _send(self, line: str) -> None:
        pipe = self._proc.stdin if self._proc is not None else None
        if pipe is not None and self._proc is not None and self._proc.poll() is None:
            try:
                pipe.write(line.encode())
                pipe.flush()
                return
            except (BrokenPipeError, ValueError):
                pass
        self._start()  # tells the new one every registered group, the one in ``line`` too

    def _start(self) -> None:
        if self._proc is not None:  # reap the one that died
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=0)
        source = inspect.getsource(_watchdog_main) + "\n_watchdog_main()\n"
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", source],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={},
            # its own session: Ctrl-C, or a signal to the process group of amlops, must not
            # stop the watchdog before amlops has stopped its children
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(
            "".join(f"+ {r.pid} {r.start or ''}\n" for r in self._groups.values()).encode()
        )
        proc.stdin.flush()
        self._proc = proc


_WATCHDOG = _Watchdog()


def stop_group(
    record: PidRecord, proc: subprocess.Popen[bytes] | None = None, grace_s: float = 5.0
) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``; reap it when it is our child."""
    if proc is not None and proc.poll() is not None:
        _kill_group(record.pid, signal.SIGKILL)  # the leader is gone; make sure its group is
        _WATCHDOG.forget(record.pid)
        return
    if proc is None and not is_alive(record):
        # the leader is gone but its workers may not be; a pgid cannot be handed out again
        # while any member of the group lives, so this reaches only what we started
        _kill_group(record.pid, signal.SIGKILL)
        _WATCHDOG.forget(record.pid)
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
    _WATCHDOG.forget(record.pid)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
