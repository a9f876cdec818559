"""The clock long-running operations are measured against; tests move it by hand."""

from __future__ import annotations

import threading
import time


class Clock:
    """Seconds since the fake started: ``advance()`` adds to it; ``rate`` > 0 also lets real
    time flow into it (``rate=1.0`` follows the wall clock), for callers that cannot step it."""

    def __init__(self, rate: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._t0 = time.monotonic()
        self.rate = rate

    def now(self) -> float:
        with self._lock:
            return self._offset + (time.monotonic() - self._t0) * self.rate

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()
