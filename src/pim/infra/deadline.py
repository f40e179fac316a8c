"""A hard deadline for stopping: once a process is asked to stop, it has a few seconds to do
so in order; then its last resort runs (kill what it started) and it exits, whatever it was
waiting for (a database that is down, a connection that never answers)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class StopDeadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.requested = threading.Event()
        self._last_resorts: list[Callable[[], None]] = []
        self._armed = False
        self._lock = threading.Lock()

    def on_expiry(self, last_resort: Callable[[], None]) -> None:
        """Run ``last_resort`` (best effort) when the deadline passes, before exiting."""
        self._last_resorts.append(last_resort)

    def arm(self) -> None:
        """Start counting (once): a stop was asked for."""
        with self._lock:
            self.requested.set()
            if self._armed:
                return
            self._armed = True
        threading.Thread(target=self._expire, name="stop-deadline", daemon=True).start()

    def _expire(self) -> None:
        time.sleep(self.seconds)
        log.error("not stopped within %ss; exiting now", self.seconds)
        for last_resort in self._last_resorts:
            with contextlib.suppress(Exception):
                last_resort()
        os._exit(1)
