"""Noticing edits under the manifests' folder while ``amlops up`` waits between passes."""

from __future__ import annotations

import os
import time
from pathlib import Path

_WATCH_POLL_S = 0.5


class Watcher:
    """Notices edits under PATH (manifests, and the code and data they point at)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._last = self._snapshot()

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in files:
                if name.startswith(".") or name.endswith(".pyc"):
                    continue
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                out[path] = (stat.st_mtime_ns, stat.st_size)
        return out

    def changed(self) -> bool:
        now = self._snapshot()
        if now != self._last:
            self._last = now
            return True
        return False


def wait_for_change(seconds: float, watcher: Watcher) -> bool:
    """Sleep, waking early when files change; True when they did."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(_WATCH_POLL_S, left))
        if watcher.changed():
            return True
