"""Tracking as a stage: a tracker and its events for each source that asks for it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any

from streamd.config import SourceConfig
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.tracking.events import SourceEvents
from streamd.tracking.metrics import TrackingMetrics
from streamd.types import Result, TrackedObject


class TrackingStage(Stage):
    """A tracker and its events (``new``, ``enter``, ``exit``, ``end``...) per source with
    ``[sources.tracking]``."""

    name = "tracking"
    order = 300

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._sink = context.publisher
        self._metrics = TrackingMetrics(context.metrics.registry, context.metrics.detections_filtered)
        self._ids: dict[str, Iterator[int]] = {}  # track ids per source, for the whole run
        self.seconds = 0.0  # time spent tracking, for the bench and the shutdown log
        self.frames = 0

    def for_source(self, config: SourceConfig) -> SourceTracking | None:
        if config.tracking is None:
            return None
        source = config.name
        sink = self._sink
        events = SourceEvents(
            config,
            lambda suffix, payload, retain: sink.publish(sink.topic(source, suffix), payload, retain=retain),
            self._metrics,
            ids=self._ids.setdefault(source, itertools.count(1)),
        )
        return SourceTracking(events, self)

    def series_for(self, source: str) -> None:
        self._metrics.init_source(source)

    def add_time(self, seconds: float) -> None:
        self.seconds += seconds
        self.frames += 1

    @property
    def ms_per_frame(self) -> float | None:
        return round(1000 * self.seconds / self.frames, 3) if self.frames else None


class SourceTracking(SourceHandler):
    """One source's tracker and events; its tracks end when the source's last frame is through."""

    wants_skipped = True  # tracks age in frames where nothing moved

    def __init__(self, events: SourceEvents, stage: TrackingStage) -> None:
        self.events = events
        self._stage = stage
        self._last_frame = 0
        self._listeners: Sequence[SourceHandler] = ()
        self._finished = False

    def start(self) -> None:
        self._stage.series_for(self.events.source)

    def listen(self, listeners: Sequence[SourceHandler]) -> None:
        """Later handlers that add to a track's end event (its snapshot)."""
        self._listeners = listeners
        self.events.before_end = self._before_end if listeners else None

    def _before_end(self, track_id: int) -> asyncio.Task[dict[str, Any]] | None:
        waiting = [
            (listener.end_key or "", task) for listener in self._listeners if (task := listener.track_ended(track_id))
        ]
        if not waiting:
            return None
        return asyncio.get_running_loop().create_task(_gathered(waiting), name=f"end-{self.events.source}-{track_id}")

    def on_result(self, result: Result) -> None:
        frame = result.frame
        self._last_frame = frame.seq + 1
        if self._finished or frame.skipped == "interval":
            return  # detect_interval: the tracker sees the frames it would have seen at a lower fps
        # A frame skipped for lack of motion is one where nothing moved: the tracks age as in a
        # frame without detections (so objects that left end in time), and min_interval makes
        # sure one standing still is seen again before its max_age.
        started = time.perf_counter()
        events = self.events
        events.on_frame(frame.seq, frame.ts, frame.width, frame.height, result.detections)
        result.tracks = [
            TrackedObject(
                t.id,
                t.label,
                t.score,
                t.observed,
                t.age == 0,
                t.stationary,
                tuple(sorted(t.zones)),
                tuple(sorted(t.crossed)),
                t.first_seen,
                t.score_max,
            )
            for t in events.tracker.tracks
            if t.confirmed and events.announced(t.id)
        ]
        self._stage.add_time(time.perf_counter() - started)

    def finish(self) -> None:
        """The source's last frame is through: every track ends."""
        self._finished = True
        self.events.finish(self._last_frame)


async def _gathered(waiting: list[tuple[str, asyncio.Task[dict[str, Any] | None]]]) -> dict[str, Any]:
    """What the listeners add to the end event, by key; one that fails or has nothing adds nothing."""
    extra: dict[str, Any] = {}
    for key, task in waiting:
        try:
            value = await task
        except Exception:  # the listener logged it; the end event still goes out
            continue
        if value:
            extra[key] = value
    return extra
