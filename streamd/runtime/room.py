"""Free places in a lossless source's share of the frame queue, for its reader thread.

A reader with ``drop = "block"`` runs ahead of inference until its share is full, then must wait
for the engine to take frames. With a semaphore it waited for one place: every frame the engine
took woke the reader (a futex wake from the event loop's thread, holding the GIL, then the
reader's own trip through the GIL and the loop's self-pipe to hand one frame over), so on a
saturated machine each frame cost several context switches on every side. A reader that finds
the share full here sleeps until ``batch`` places are free, then fills them in one go: one
wake-up, and one hand-over to the loop, per batch. The engine never starves for it: the reader
waits only while its share still holds more than ``size - batch`` frames.
"""

from __future__ import annotations

import threading

BATCH = 8  # places a waiting reader waits for (at most a quarter of the share)


class Room:
    def __init__(self, size: int, batch: int = BATCH) -> None:
        self._free = size
        self._batch = max(1, min(batch, size // 4))
        self._changed = threading.Condition(threading.Lock())
        self._waiting = False

    def give(self) -> None:
        """A place freed (the queue handed one of the source's frames on, or skipped it): wakes
        the reader only once its batch of places is free."""
        with self._changed:
            self._free += 1
            if self._waiting and self._free >= self._batch:
                self._changed.notify()

    def take(self, timeout: float) -> bool:
        """A place for one frame; False if none came within ``timeout`` seconds (the reader
        checks whether it should stop, then asks again: a place freed meanwhile is taken)."""
        with self._changed:
            if not self._free:
                self._waiting = True
                try:
                    if not self._changed.wait_for(lambda: self._free >= self._batch, timeout):
                        return False
                finally:
                    self._waiting = False
            self._free -= 1
            return True
