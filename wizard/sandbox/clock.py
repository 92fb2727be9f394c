"""The sandbox clock: the time that import tasks age by.

Real imports take tens of minutes; the sandbox lets tests and demos move time
forward on demand (`advance`) or run it faster or slower than real time
(`speed`). The clock never goes backwards, so task stages only ever move on.
"""

from __future__ import annotations

import threading
import time


class SandboxClock:
    """A thread-safe clock: real elapsed time times `speed`, plus all advances.

    `now()` is in seconds since the epoch; it starts at the real time of
    creation. A speed of 0 freezes the clock between advances.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, not {speed}")
        self._lock = threading.Lock()
        self._speed = speed
        self._base = time.time()  # sandbox time at the last rebase
        self._real_base = time.monotonic()  # real time at the last rebase

    def now(self) -> float:
        """The current sandbox time (epoch seconds)."""
        with self._lock:
            return self._now()

    @property
    def speed(self) -> float:
        """How many sandbox seconds pass per real second."""
        return self._speed

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, not by {seconds}")
        with self._lock:
            self._rebase()
            self._base += seconds
            return self._base

    def set_speed(self, speed: float) -> None:
        """Run the clock at `speed` (>= 0) times real time from now on."""
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, not {speed}")
        with self._lock:
            self._rebase()
            self._speed = speed

    def _now(self) -> float:
        return self._base + (time.monotonic() - self._real_base) * self._speed

    def _rebase(self) -> None:
        self._base = self._now()
        self._real_base = time.monotonic()
