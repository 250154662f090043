"""Where a source's frame numbers start. Subscribers dedupe by ``(source, frame)``, so a number
is never used twice within a service's life, across reader restarts (a reload), worker
restarts (a crash, a kill) and sources moving between workers.

The first reader of each source at the service's start counts from 0. Any later reader starts
at the microseconds elapsed since the service started: the earlier reader started no later
than that and made fewer frames than microseconds went by (no camera makes a million frames a
second), so every number it used lies below.
"""

from __future__ import annotations

import os
import time

# CLOCK_MONOTONIC (system-wide) when the service started, and whether this process is a restart
# of a worker: set by the worker service's parent for its workers.
EPOCH_ENV = "STREAMD_SERVICE_EPOCH"
RESTARTED_ENV = "STREAMD_WORKER_RESTARTED"


class FrameNumbers:
    def __init__(self, epoch: float | None = None, fresh: bool = True) -> None:
        """``epoch``: monotonic seconds when the service started (default: now). ``fresh``: the
        sources started before :meth:`started` count from 0 (False for a restarted worker)."""
        self.epoch = time.monotonic() if epoch is None else epoch
        self._fresh = fresh
        self._used: set[str] = set()

    @classmethod
    def from_environment(cls) -> FrameNumbers:
        """A worker's: the service's epoch and whether this is a restart, from its parent."""
        raw = os.environ.get(EPOCH_ENV, "")
        try:
            epoch: float | None = float(raw)
        except ValueError:
            epoch = None
        return cls(epoch, fresh=os.environ.get(RESTARTED_ENV, "0") == "0")

    def first(self, source: str) -> int:
        """The number of the next reader's first frame of ``source``."""
        if self._fresh and source not in self._used:
            self._used.add(source)
            return 0
        return int((time.monotonic() - self.epoch) * 1_000_000) + 1

    def started(self) -> None:
        """Start-up is over: every reader from now on is a restart, a move or a newcomer."""
        self._fresh = False
