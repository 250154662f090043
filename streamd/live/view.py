"""One source's live view: the reader offers it pictures only while someone asked in the last
KEEP seconds (otherwise one clock read per frame, no picture kept), and it keeps the latest
picture and the latest inferred frame's boxes beside it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from streamd.config import SourceConfig
from streamd.stages import SourceHandler
from streamd.types import Detection, Picture, Result, TrackedObject

KEEP = 10.0  # seconds a request keeps the pictures coming (a live stream asks every frame)
RATE_WINDOW = 5.0  # seconds the FPS figures average over
CACHE = 8  # encoded pictures kept per source: viewers asking the same thing share one encode


@dataclass(frozen=True)
class Seen:
    """The latest inferred frame's objects: tracks (with ids) where the source tracks."""

    seq: int
    detections: list[Detection]
    tracks: list[TrackedObject]


@dataclass
class Rates:
    samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))  # (time, seq, inferred)
    inferred: int = 0

    def add(self, now: float, seq: int, inferred: bool) -> None:
        self.inferred += inferred
        if not self.samples or now - self.samples[-1][0] >= 0.25:
            self.samples.append((now, seq, self.inferred))
        while len(self.samples) > 2 and now - self.samples[1][0] > RATE_WINDOW:
            self.samples.popleft()

    def per_second(self, now: float) -> tuple[float, float]:
        """(captured, inferred) frames per second over the last RATE_WINDOW seconds; 0 when idle."""
        if len(self.samples) < 2 or now - self.samples[-1][0] > 2.0:
            return 0.0, 0.0
        (t0, s0, i0), (t1, s1, i1) = self.samples[0], self.samples[-1]
        seconds = t1 - t0
        return (s1 - s0) / seconds, (i1 - i0) / seconds


class LiveSource(SourceHandler):
    """The stage's handler for one source; also its reader's frame tap."""

    def __init__(self, config: SourceConfig, views: dict[str, LiveSource]) -> None:
        """``views``: the stage's, by source; it holds this one while its source runs."""
        self.config = config
        self._views = views
        self.frames = self
        self.width = 0
        self.height = 0
        self.picture: Picture | None = None  # the latest, while wanted
        self.seen: Seen | None = None
        self.viewers = 0
        self._asked_until = 0.0
        self._rates = Rates()
        self._lock = threading.Lock()
        self._encoded: dict[tuple[object, ...], tuple[int, float, bytes]] = {}
        self._arrival: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None  # a request waits

    def start(self) -> None:
        self._views[self.config.name] = self  # a reload's new route replaces the old one's view

    def finish(self) -> None:
        if self._views.get(self.config.name) is self:
            del self._views[self.config.name]
        self._asked_until = 0.0
        self.picture = None

    # -- the reader's side (its thread) --------------------------------------------------------

    def wanted(self) -> bool:
        if time.monotonic() < self._asked_until:
            return True
        if self.picture is not None:  # nobody looks any more: let the memory go
            self.picture = None
            with self._lock:
                self._encoded.clear()
        return False

    def offer(self, picture: Picture) -> None:
        self.picture = picture
        waiting = self._arrival
        if waiting is not None:
            waiting[0].call_soon_threadsafe(waiting[1].set)

    # -- the chain's side (the loop) -------------------------------------------------------------

    def on_result(self, result: Result) -> None:
        frame = result.frame
        self.width, self.height = frame.width, frame.height
        self._rates.add(frame.captured, frame.seq, result.skipped is None)
        if result.skipped is None:  # a few boxes, kept so the first picture asked for has them
            self.seen = Seen(frame.seq, list(result.detections), list(result.tracks))

    # -- the web's side --------------------------------------------------------------------------

    def ask(self) -> None:
        """Someone looks: the reader offers pictures for the next KEEP seconds."""
        self._asked_until = time.monotonic() + KEEP

    async def first_picture(self, timeout: float) -> Picture | None:
        """The latest picture, waiting up to ``timeout`` for one (none is kept before someone asks)."""
        self.ask()
        if self.picture is None:
            arrived = asyncio.Event()
            self._arrival = (asyncio.get_running_loop(), arrived)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout)
            self._arrival = None
        return self.picture

    def rates(self) -> tuple[float, float]:
        return self._rates.per_second(time.monotonic())

    def cached(self, key: tuple[object, ...]) -> tuple[int, float, bytes] | None:
        """The latest picture encoded with these options: (seq, capture time, JPEG)."""
        with self._lock:
            return self._encoded.get(key)

    def remember(self, key: tuple[object, ...], picture: Picture, jpeg: bytes) -> None:
        with self._lock:
            self._encoded.pop(key, None)
            while len(self._encoded) >= CACHE:
                del self._encoded[next(iter(self._encoded))]
            self._encoded[key] = (picture.seq, picture.ts, jpeg)
