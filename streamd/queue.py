"""The bounded frame queue between sources and the engine.

One deque per source, served round-robin: a fast source cannot starve a slow one of inference
slots. Each source's deque holds at most ``size`` frames; what happens when it is full is the
source's ``drop`` policy: ``oldest`` (live: latency stays bounded), ``newest``, or ``block``
(files: the reader waits, nothing is lost). All deques together hold at most ``max_bytes`` of
frame data: past it, the oldest frame of the (non-blocking) source holding the most is dropped
(``queue_bytes``), and ``block`` readers wait for room.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from streamd.types import Frame

DropCallback = Callable[[str, str], None]  # (source, reason)
SkipCallback = Callable[[str, str], None]  # (source, reason): not inferred on purpose


class QueueClosed(Exception):
    pass


class FrameQueue:
    def __init__(
        self,
        size: int,
        on_drop: DropCallback | None = None,
        max_bytes: int = 1 << 30,
        on_skip: SkipCallback | None = None,
    ) -> None:
        """``on_drop``: a frame lost (queue full, memory bound, shutdown); ``on_skip``: a frame
        of a paused source (detect switched off), not inferred on purpose."""
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0  # frame data queued now (read by block readers, from their threads)
        self._held: dict[str, int] = {}  # bytes queued per source
        self._blocking: set[str] = set()  # sources with the 'block' policy: never evicted
        self._queues: dict[str, deque[Frame]] = {}
        self._order: deque[str] = deque()  # round-robin cursor over sources
        self._on_drop = on_drop or (lambda source, reason: None)
        self._readable = asyncio.Event()
        self._space: dict[str, asyncio.Event] = {}
        self._closed = False
        self._depth = 0
        self._taken: dict[str, Callable[[], None]] = {}
        self._paused: dict[str, str] = {}  # source -> why its frames are skipped
        self._on_skip = on_skip or (lambda source, reason: None)

    def __len__(self) -> int:
        return self._depth

    @property
    def closed(self) -> bool:
        return self._closed

    def _queue(self, source: str) -> deque[Frame]:
        q = self._queues.get(source)
        if q is None:
            q = self._queues[source] = deque()
            self._order.append(source)
            self._space[source] = asyncio.Event()
        return q

    def on_taken(self, source: str, callback: Callable[[], None]) -> None:
        """Called whenever one of ``source``'s frames leaves the queue: lets a reader thread
        count free room with a semaphore (``block``) instead of a round trip per frame."""
        self._taken[source] = callback

    async def drained(self, source: str) -> None:
        """Until no frame of ``source`` is queued (each get() of one of its frames wakes us)."""
        while self._queues.get(source):
            space = self._space[source]
            space.clear()
            await space.wait()

    def drop(self, frame: Frame, reason: str) -> None:
        """A frame that never entered the queue (a blocked reader told to stop): counted."""
        self._on_drop(frame.source, reason)

    def pause(self, source: str, reason: str) -> int:
        """Skip ``source``'s frames from now on, and those already queued (returns how many):
        inference stops within the frames already on the device. Capture goes on."""
        self._paused[source] = reason
        q = self._queues.get(source)
        skipped = len(q) if q else 0
        if q:
            while q:
                self._forget(q.popleft())
                self._skip(source, reason)
            self._space[source].set()
        return skipped

    def _skip(self, source: str, reason: str) -> None:
        self._on_skip(source, reason)
        taken = self._taken.get(source)
        if taken is not None:
            taken()  # a 'block' reader counted it as queued

    def resume(self, source: str) -> None:
        self._paused.pop(source, None)

    def paused(self, source: str) -> bool:
        return source in self._paused

    def put_nowait(self, frame: Frame, drop: str = "oldest") -> None:
        """Enqueue or drop by policy (``block`` callers use :meth:`put`)."""
        if self._closed:
            self._on_drop(frame.source, "shutdown")
            return
        paused = self._paused.get(frame.source)
        if paused is not None:
            self._skip(frame.source, paused)
            return
        q = self._queue(frame.source)
        if drop == "block":
            self._blocking.add(frame.source)
        if len(q) >= self.size:
            if drop == "newest":
                self._on_drop(frame.source, "queue_full_newest")
                return
            self._forget(q.popleft())
            self._on_drop(frame.source, "queue_full_oldest")
        if self.bytes + frame.nbytes > self.max_bytes and not self._make_room(frame, drop):
            return
        q.append(frame)
        self._depth += 1
        self.bytes += frame.nbytes
        self._held[frame.source] = self._held.get(frame.source, 0) + frame.nbytes
        self._readable.set()

    def _forget(self, frame: Frame) -> None:
        self._depth -= 1
        self.bytes -= frame.nbytes
        self._held[frame.source] -= frame.nbytes

    def _make_room(self, frame: Frame, drop: str) -> bool:
        """Over the memory bound: evict the oldest frames of the source holding the most bytes
        (fair across sources); False when ``frame`` itself is the one to drop."""
        while self.bytes + frame.nbytes > self.max_bytes:
            candidates = [s for s, q in self._queues.items() if q and s not in self._blocking]
            if not candidates:
                break  # only lossless sources queued: their readers wait (see CaptureSource)
            victim = max(candidates, key=lambda s: self._held.get(s, 0))
            if drop == "newest" and victim == frame.source:
                self._on_drop(frame.source, "queue_bytes")
                return False
            self._forget(self._queues[victim].popleft())
            self._on_drop(victim, "queue_bytes")
        return True

    async def get(self) -> Frame:
        """Next frame, round-robin across sources; raises QueueClosed once closed and empty."""
        while True:
            for _ in range(len(self._order)):
                source = self._order[0]
                self._order.rotate(-1)
                q = self._queues[source]
                if q:
                    frame = q.popleft()
                    self._forget(frame)
                    self._space[source].set()
                    taken = self._taken.get(source)
                    if taken is not None:
                        taken()
                    return frame
            if self._closed:
                raise QueueClosed
            self._readable.clear()
            await self._readable.wait()

    def close(self) -> None:
        """No more frames will come; getters drain what is left, blocked putters are released."""
        self._closed = True
        self._readable.set()
        for event in self._space.values():
            event.set()

    def clear(self) -> int:
        """Drop everything queued (forced shutdown); returns how many frames went."""
        dropped = 0
        for source, q in self._queues.items():
            taken = self._taken.get(source)
            for _ in range(len(q)):
                self._on_drop(source, "shutdown")
                if taken is not None:
                    taken()
            dropped += len(q)
            q.clear()
            self._held[source] = 0
        self._depth = 0
        self.bytes = 0
        return dropped
